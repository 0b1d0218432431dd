# SCULPT_SANITIZE=address|undefined instruments every target (compile and link).
if(SCULPT_SANITIZE)
  if(NOT SCULPT_SANITIZE MATCHES "^(address|undefined)$")
    message(FATAL_ERROR "SCULPT_SANITIZE must be 'address' or 'undefined', got '${SCULPT_SANITIZE}'")
  endif()
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${SCULPT_SANITIZE}>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=${SCULPT_SANITIZE})
endif()
