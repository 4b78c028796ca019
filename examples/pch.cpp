// Anchor for the examples' shared precompiled header (see CMakeLists.txt).
