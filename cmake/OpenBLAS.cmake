# OpenBLAS, preferring the OpenMP build so that BLAS and Gradus's own kernels share one thread pool
# (the OpenMP runtime is the one owner of CPU threads; see docs/threads.md). Debian ships it as
# libopenblas-openmp-dev in its own directory; any other OpenBLAS is accepted with a warning.
find_library(GRADUS_OPENBLAS_LIBRARY NAMES openblas
             PATHS /usr/lib/x86_64-linux-gnu/openblas-openmp /usr/lib/aarch64-linux-gnu/openblas-openmp
             NO_DEFAULT_PATH)
set(GRADUS_OPENBLAS_IS_OPENMP ON)
if(NOT GRADUS_OPENBLAS_LIBRARY)
  find_library(GRADUS_OPENBLAS_LIBRARY NAMES openblas REQUIRED)
  set(GRADUS_OPENBLAS_IS_OPENMP OFF)
  message(WARNING "OpenBLAS found at ${GRADUS_OPENBLAS_LIBRARY} is not the OpenMP build "
                  "(Debian: apt-get install libopenblas-openmp-dev). Gradus sets its thread count "
                  "to 1 inside OpenMP regions, which is correct but may be slower.")
endif()
find_path(GRADUS_CBLAS_INCLUDE NAMES cblas.h PATH_SUFFIXES openblas REQUIRED
          PATHS /usr/include/x86_64-linux-gnu/openblas-openmp /usr/include/x86_64-linux-gnu/openblas-pthread)
get_filename_component(GRADUS_OPENBLAS_DIR ${GRADUS_OPENBLAS_LIBRARY} DIRECTORY)
add_library(gradus_openblas INTERFACE)
target_link_libraries(gradus_openblas INTERFACE ${GRADUS_OPENBLAS_LIBRARY})
target_include_directories(gradus_openblas INTERFACE ${GRADUS_CBLAS_INCLUDE})
if(GRADUS_OPENBLAS_IS_OPENMP)
  target_compile_definitions(gradus_openblas INTERFACE GRADUS_OPENBLAS_OPENMP=1)
endif()
# The loader would otherwise pick whichever libopenblas.so.0 the system alternative points at.
set(CMAKE_BUILD_RPATH ${GRADUS_OPENBLAS_DIR})
set(CMAKE_INSTALL_RPATH ${GRADUS_OPENBLAS_DIR})
