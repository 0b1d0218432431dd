# sculpt_cuda_sources(target sources...): adds .cu files when CUDA is on, built as SASS for each
# architecture in SCULPT_CUDA_ARCHS (default 90) plus PTX for the newest, so newer GPUs JIT it.
set(SCULPT_CUDA_ARCHS "90" CACHE STRING "CUDA SM architectures for Sculpt's kernels (PTX for the last)")
function(sculpt_cuda_sources target)
  if(NOT SCULPT_WITH_CUDA)
    return()
  endif()
  target_sources(${target} PRIVATE ${ARGN})
  set(_flags "")
  foreach(arch IN LISTS SCULPT_CUDA_ARCHS)
    list(APPEND _flags "--generate-code=arch=compute_${arch},code=sm_${arch}")
  endforeach()
  list(GET SCULPT_CUDA_ARCHS -1 _last)
  list(APPEND _flags "--generate-code=arch=compute_${_last},code=compute_${_last}")
  set_target_properties(${target} PROPERTIES CUDA_STANDARD 17 CUDA_ARCHITECTURES OFF)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:${_flags} --expt-relaxed-constexpr -Xcompiler=-fPIC>)
endfunction()
