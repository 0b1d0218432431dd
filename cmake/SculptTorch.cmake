# Finds LibTorch: CMAKE_PREFIX_PATH first, else the virtualenv of scripts/setup.sh
# (SCULPT_TORCH_PREFIX, or asking its python for torch.utils.cmake_prefix_path).
if(NOT DEFINED SCULPT_TORCH_PREFIX AND DEFINED ENV{SCULPT_TORCH_PREFIX})
  set(SCULPT_TORCH_PREFIX $ENV{SCULPT_TORCH_PREFIX})
endif()
set(_python "$ENV{SCULPT_PYTHON}")
if(NOT _python)  # the default place of scripts/setup.sh's virtualenv
  if(DEFINED ENV{SCULPT_DEPS_DIR})
    set(_python "$ENV{SCULPT_DEPS_DIR}/venv/bin/python")
  elseif(DEFINED ENV{XDG_CACHE_HOME})
    set(_python "$ENV{XDG_CACHE_HOME}/sculpt/venv/bin/python")
  else()
    set(_python "$ENV{HOME}/.cache/sculpt/venv/bin/python")
  endif()
endif()
if(NOT DEFINED SCULPT_TORCH_PREFIX AND EXISTS "${_python}" AND NOT CMAKE_PREFIX_PATH MATCHES "[Tt]orch")
  execute_process(COMMAND ${_python} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
                  OUTPUT_VARIABLE SCULPT_TORCH_PREFIX OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
if(SCULPT_TORCH_PREFIX)
  list(APPEND CMAKE_PREFIX_PATH ${SCULPT_TORCH_PREFIX})
endif()

# Torch's own CUDA discovery needs the CUDA language settled first; decide it here.
include(CheckLanguage)
set(SCULPT_WITH_CUDA OFF)
if(NOT SCULPT_CUDA STREQUAL "OFF")
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(SCULPT_WITH_CUDA ON)
  elseif(SCULPT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "SCULPT_CUDA=ON but no CUDA compiler (nvcc) was found")
  endif()
endif()
if(SCULPT_WITH_CUDA)
  # Architectures are ours to set (sculpt_cuda_sources); torch's cmake rejects
  # CMAKE_CUDA_ARCHITECTURES, so it is only used to get past enable_language().
  set(CMAKE_CUDA_ARCHITECTURES OFF)
  enable_language(CUDA)
  unset(CMAKE_CUDA_ARCHITECTURES)
  set(TORCH_CUDA_ARCH_LIST "9.0+PTX" CACHE STRING "")
  find_package(CUDAToolkit REQUIRED)
endif()

find_package(Torch REQUIRED)
if(SCULPT_WITH_CUDA AND NOT TARGET c10_cuda AND NOT TORCH_CUDA_LIBRARIES)
  if(SCULPT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "SCULPT_CUDA=ON but LibTorch at ${Torch_DIR} is a CPU-only build")
  endif()
  set(SCULPT_WITH_CUDA OFF)
endif()
message(STATUS "Sculpt: LibTorch ${Torch_VERSION} from ${Torch_DIR}; CUDA kernels: ${SCULPT_WITH_CUDA}")

# One interface target for everything that touches torch: includes as SYSTEM, no warnings from them.
# sculpt_torch links LibTorch's CPU libraries only: a CUDA wheel's libtorch.so pulls in
# libtorch_cuda.so (450 MB; ~250 MB of resident memory and start-up time in every process).
# sculpt_torch_cuda adds the CUDA libraries, for the few targets with CUDA code of their own
# (libsculpt_kernels_cuda, the NCCL backend); sculpt::load_cuda_runtime() loads those where a GPU
# driver is (core/run/run_context.cpp).
add_library(sculpt_torch INTERFACE)
add_library(sculpt_torch_cuda INTERFACE)
if(TARGET torch_cpu AND TARGET c10)
  target_link_libraries(sculpt_torch INTERFACE torch_cpu c10)
  target_link_libraries(sculpt_torch_cuda INTERFACE sculpt_torch
    "-Wl,--push-state,--no-as-needed" ${TORCH_LIBRARIES} "-Wl,--pop-state")
else()
  target_link_libraries(sculpt_torch INTERFACE ${TORCH_LIBRARIES})
  target_link_libraries(sculpt_torch_cuda INTERFACE sculpt_torch)
endif()
target_include_directories(sculpt_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
target_compile_options(sculpt_torch INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${TORCH_CXX_FLAGS}>)
if(SCULPT_WITH_CUDA)
  target_compile_definitions(sculpt_torch INTERFACE SCULPT_WITH_CUDA=1)
endif()
