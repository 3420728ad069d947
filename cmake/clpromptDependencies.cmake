# Finds every dependency of clprompt. Used by the build (where a missing package is an error)
# and by the installed clpromptConfig.cmake (where find_dependency reports it to the caller).
include(CMakeFindDependencyMacro)
macro(_clprompt_find package)
  if(PROJECT_NAME STREQUAL "clprompt")
    find_package(${package} REQUIRED ${ARGN})
  else()
    find_dependency(${package} ${ARGN})
  endif()
endmacro()
_clprompt_find(Torch)       # Debian: libtorch-dev
_clprompt_find(fmt)         # libfmt-dev
_clprompt_find(nlohmann_json)  # nlohmann-json3-dev
_clprompt_find(Eigen3)      # libeigen3-dev
_clprompt_find(ZLIB)        # zlib1g-dev
find_path(CLPROMPT_STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb
          DOC "Directory holding stb_image.h (Debian: libstb-dev)")
