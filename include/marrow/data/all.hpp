#pragma once
// Every data header: IDX/MNIST, images, text, colour, augmentation, loaders.
// Include single headers instead where compile time matters: idx.hpp and
// image.hpp compile stb into the including translation unit (see stb_impl.hpp).
#include "augment.hpp"
#include "color.hpp"
#include "file.hpp"
#include "idx.hpp"
#include "image.hpp"
#include "loader.hpp"
#include "text.hpp"
