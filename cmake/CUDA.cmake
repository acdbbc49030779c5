# Decides GRADUS_WITH_CUDA from the GRADUS_CUDA option (AUTO / ON / OFF).
# Targets sm_90 (H100/H200) plus PTX so newer GPUs JIT the kernels.
set(GRADUS_WITH_CUDA OFF)
if(NOT GRADUS_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90-real 90-virtual)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    # CUDA sources are C++17: fmt 9 (Debian's) does not compile under nvcc in C++20 mode (its
    # consteval format strings call functions it makes non-constexpr for nvcc). The headers they
    # include from core/ and kernels/ stay C++17-clean for that reason.
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    # Line info for profilers; constexpr host functions usable on the device. nvcc contracts
    # a * b + c into FMA (unlike the host build): the tests compare with the CPU within per-dtype
    # tolerances, and replay on the GPU is still bit-exact because the contraction is fixed at
    # compile time.
    set(CMAKE_CUDA_FLAGS "${CMAKE_CUDA_FLAGS} --expt-relaxed-constexpr -lineinfo -Xcompiler=-Wall")
    file(GLOB_RECURSE _gradus_cu CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cu)
    if(_gradus_cu)
      set(GRADUS_WITH_CUDA ON)
    else()
      message(STATUS "Gradus: nvcc found; kernels/cuda has no sources yet, CUDA backend not built")
    endif()
  elseif(GRADUS_CUDA STREQUAL "ON")
    message(FATAL_ERROR "GRADUS_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER "
                        "or put nvcc on PATH)")
  endif()
endif()
