# sculpt_warnings(target): -Wall -Wextra (aggregates with defaults may omit fields) for our own C++ sources (not for nvcc host passes).
function(sculpt_warnings target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-missing-field-initializers>)
endfunction()
