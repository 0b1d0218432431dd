# One precompiled <torch/torch.h> for every C++ target that uses torch. It is owned by a small
# object library that carries only torch's own flags: GCC refuses a PCH built with a macro the
# consumer lacks (e.g. a shared library's <name>_EXPORTS), but accepts extra consumer macros.
if(SCULPT_PCH)
  file(WRITE ${CMAKE_BINARY_DIR}/sculpt_pch.cpp "// owner of the shared torch PCH\n")
  add_library(sculpt_pch OBJECT ${CMAKE_BINARY_DIR}/sculpt_pch.cpp)
  target_link_libraries(sculpt_pch PRIVATE sculpt_torch)
  target_precompile_headers(sculpt_pch PRIVATE <torch/torch.h>)
endif()

# sculpt_use_pch(target): reuse the shared torch PCH (C++ sources only).
# Executables are compiled -fPIC (not -fPIE) so that the PCH's code model matches.
function(sculpt_use_pch target)
  if(NOT SCULPT_PCH)
    return()
  endif()
  target_precompile_headers(${target} REUSE_FROM sculpt_pch)
  get_target_property(_type ${target} TYPE)
  if(_type STREQUAL "EXECUTABLE")
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE OFF)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fPIC>)
  endif()
endfunction()

# sculpt_defaults(target): what every torch-using target of ours gets: warnings and the PCH.
# Executables list libstdc++ as their first needed library: the torch wheel's libtorch.so and
# libtorch_cpu.so export their own std::filesystem symbols (remove_all segfaults from there),
# and the first library in the global lookup order wins.
function(sculpt_defaults target)
  sculpt_warnings(${target})
  sculpt_use_pch(${target})
  get_target_property(_type ${target} TYPE)
  if(_type STREQUAL "EXECUTABLE")
    target_link_options(${target} BEFORE PRIVATE
      "SHELL:-Wl,--push-state,--no-as-needed -lstdc++ -Wl,--pop-state")
  endif()
endfunction()

# sculpt_light_sources(files...): sources that include no heavy torch header. Loading the PCH
# (~700 MB) costs them ~7 s each, more than parsing what they include, so they skip it.
function(sculpt_light_sources)
  set_source_files_properties(${ARGN} DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}
                              PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
endfunction()
