// Every op, loss, initializer and optimizer helper instantiated once for float:
// translation units built with MARROW_EXTERN_TEMPLATES link this object
// instead of compiling their own copies (see include/marrow/instances.hpp).
#define MARROW_INSTANTIATING
#include <marrow/instances.hpp>

namespace marrow {
MARROW_INSTANCES(template, float)
}  // namespace marrow
