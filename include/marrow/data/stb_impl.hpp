#pragma once
// stb_image + stb_image_write, compiled into every translation unit that needs them.
//
// Why static copies: marrow is header-only, and stb's implementation must be
// compiled exactly once per *symbol*. With STB_IMAGE_STATIC every function has
// internal linkage, so each TU that includes a marrow data header gets its own
// private copy and nothing collides at link time, with no "define X in exactly
// one .cpp" ritual for users. The price is ~1.5 s of compile time and ~150 KB
// of code per such TU; only data/idx.hpp and data/image.hpp include this.
//
// If your program already compiles stb itself (non-static), define
// MARROW_STB_EXTERNAL before including marrow (or include stb's headers before
// marrow's): then only the declarations are pulled in and your implementation is used.
#if !defined(MARROW_STB_EXTERNAL)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#ifndef STBI_INCLUDE_STB_IMAGE_H
#ifndef STB_IMAGE_STATIC
#define STB_IMAGE_STATIC
#endif
// Only the formats marrow reads (PNG, JPEG, BMP, TGA): the GIF, PSD, PIC, PNM and HDR
// decoders of stb 2.27 carry known memory-safety bugs, and every decoder is attack surface
// for files from strangers.
#define STBI_NO_GIF
#define STBI_NO_PSD
#define STBI_NO_PIC
#define STBI_NO_PNM
#define STBI_NO_HDR
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#undef STB_IMAGE_IMPLEMENTATION
#endif
// MARROW_STB_WRITE_INCLUDED is shared with train/plot.hpp, which embeds stb_image_write
// the same way: stb's own guard covers only the declarations, so without it a TU that
// includes both headers would get the implementation twice.
#if !defined(MARROW_STB_WRITE_INCLUDED) && !defined(INCLUDE_STB_IMAGE_WRITE_H)
#define MARROW_STB_WRITE_INCLUDED
#ifndef STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_STATIC
#endif
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#undef STB_IMAGE_WRITE_IMPLEMENTATION
#endif
#pragma GCC diagnostic pop
#else
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#endif
