# CUDA for the native algorithm backends (backends/native). Only compiled: no GPU is needed to build.
# BEAMLINE_WITH_CUDA defaults to ON when nvcc is found (CMAKE_CUDA_COMPILER, /usr/local/cuda or
# PATH). Code is generated for sm_80 and sm_90 plus sm_90 PTX (for newer GPUs), and binaries link
# the static CUDA runtime only (never the driver stub), so they start on machines without a driver.
set(_beamline_nvcc "")
if(CMAKE_CUDA_COMPILER)
  set(_beamline_nvcc "${CMAKE_CUDA_COMPILER}")
elseif(EXISTS /usr/local/cuda/bin/nvcc)
  set(_beamline_nvcc /usr/local/cuda/bin/nvcc)
else()
  find_program(_beamline_nvcc_on_path nvcc)
  if(_beamline_nvcc_on_path)
    set(_beamline_nvcc "${_beamline_nvcc_on_path}")
  endif()
endif()
if(_beamline_nvcc)
  set(_beamline_cuda_default ON)
else()
  set(_beamline_cuda_default OFF)
endif()
option(BEAMLINE_WITH_CUDA "Compile the CUDA versions of the native algorithms" ${_beamline_cuda_default})

if(BEAMLINE_WITH_CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    if(NOT _beamline_nvcc)
      message(FATAL_ERROR "BEAMLINE_WITH_CUDA is ON but nvcc was not found; set "
                          "CMAKE_CUDA_COMPILER or turn BEAMLINE_WITH_CUDA off")
    endif()
    set(CMAKE_CUDA_COMPILER "${_beamline_nvcc}" CACHE FILEPATH "CUDA compiler" FORCE)
  endif()
  # Before enable_language: "native" would fail on machines without a GPU.
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "80-real;90-real;90-virtual")
  endif()
  enable_language(CUDA)
  # CMake 3.25 knows no C++20 flag for nvcc; the .cu files need C++17 only.
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
  message(STATUS "beamline: CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")
else()
  message(STATUS "beamline: building without CUDA")
endif()
