#pragma once
// stb_image_write for the tests that write PNG/JPEG/BMP files: the implementation, private
// (static) to each compilation unit that includes it, included once per unit.
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
