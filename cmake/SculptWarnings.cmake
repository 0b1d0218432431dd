# sculpt_warnings(target): -Wall -Wextra for our own C++ sources (not for nvcc host passes).
function(sculpt_warnings target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>)
endfunction()
