# The installable SDK: `cmake --install build --prefix P` gives P/include (core/, trainers/,
# compression/, ... headers in the source layout), P/lib (the shared libraries, the sculpt
# executable's too), P/bin/sculpt and P/lib/cmake/Sculpt, so that another project's
# find_package(Sculpt) provides Sculpt::compression (and core, trainers) for building passes.
# Install rules only: nothing here adds to the build.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(SCULPT_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/Sculpt)

set(_sculpt_sdk_targets sculpt_core sculpt_distributed sculpt_kernels sculpt_trainers
                        sculpt_compression)
foreach(_t IN LISTS _sculpt_sdk_targets ITEMS sculpt_torch)
  string(REGEX REPLACE "^sculpt_" "" _name ${_t})
  set_target_properties(${_t} PROPERTIES EXPORT_NAME ${_name})
endforeach()
# Installed binaries find the installed libraries next door, and LibTorch where it was found.
foreach(_t IN LISTS _sculpt_sdk_targets ITEMS sculpt_app sculpt)
  set_target_properties(${_t} PROPERTIES INSTALL_RPATH "$ORIGIN;$ORIGIN/../${CMAKE_INSTALL_LIBDIR}"
                                         INSTALL_RPATH_USE_LINK_PATH ON)
endforeach()
# Consumers include "core/...", "compression/..." from P/include.
target_include_directories(sculpt_core PUBLIC $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

install(TARGETS sculpt_torch ${_sculpt_sdk_targets} EXPORT SculptTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS sculpt sculpt_app
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(_dir core distributed kernels trainers compression)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${_dir} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
          FILES_MATCHING PATTERN "*.h")
endforeach()

install(EXPORT SculptTargets NAMESPACE Sculpt:: DESTINATION ${SCULPT_INSTALL_CMAKEDIR})
# SculptConfig.cmake finds the same LibTorch again: the Torch_DIR of this build is recorded.
set(SCULPT_TORCH_DIR_AT_BUILD "${Torch_DIR}")
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/SculptConfig.cmake.in
                              ${CMAKE_BINARY_DIR}/SculptConfig.cmake
                              INSTALL_DESTINATION ${SCULPT_INSTALL_CMAKEDIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/SculptConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/SculptConfig.cmake ${CMAKE_BINARY_DIR}/SculptConfigVersion.cmake
        DESTINATION ${SCULPT_INSTALL_CMAKEDIR})
