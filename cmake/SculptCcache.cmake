# ccache, shared across clones: CCACHE_BASEDIR makes paths relative to the source tree so a fresh
# clone elsewhere (CI) hits the same cache; sloppiness settings let it cache PCH users.
find_program(SCULPT_CCACHE ccache)
if(SCULPT_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(_env CCACHE_BASEDIR=${CMAKE_SOURCE_DIR}
           CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
           CCACHE_NOHASHDIR=1)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CMAKE_COMMAND} -E env ${_env} ${SCULPT_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${CMAKE_COMMAND} -E env ${_env} ${SCULPT_CCACHE})
  message(STATUS "Sculpt: ccache ${SCULPT_CCACHE} (base dir ${CMAKE_SOURCE_DIR})")
endif()
