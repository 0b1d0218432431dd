# SCULPT_SANITIZE_READERS (issue 28; scripts/sanitize.sh, build-sanitize): ASan + UBSan over the
# code that reads untrusted files -- config (YAML, extends, overrides), safetensors and atomic
# writes, the dataset readers (IDX, CSV, jsonl, data.name: text and its token cache), the
# tokenizers (tokenizer.json, SentencePiece .model), Hugging Face config.json, checkpoints and
# the plugin loader -- and their unit tests, without instrumenting (or compiling) the rest: those
# sources are compiled into the test executables, and everything else comes uninstrumented from
# the main build's shared libraries (SCULPT_MAIN_BUILD), whose definitions the instrumented ones
# interpose. A cold build compiles ~20 files instead of Sculpt's ~250.
set(SCULPT_MAIN_BUILD "${PROJECT_SOURCE_DIR}/build" CACHE PATH
    "A normal build of Sculpt whose lib/ provides the uninstrumented libraries")
find_package(Catch2 REQUIRED)
include(Catch)
find_package(ICU REQUIRED COMPONENTS uc i18n)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SCULPT_SAN_PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)

set(_lib ${SCULPT_MAIN_BUILD}/lib)
set(_prebuilt)
foreach(_name app compression trainers kernels distributed core)
  add_library(sculpt_${_name}_prebuilt SHARED IMPORTED)
  set_target_properties(sculpt_${_name}_prebuilt PROPERTIES
                        IMPORTED_LOCATION ${_lib}/libsculpt_${_name}.so)
  list(APPEND _prebuilt sculpt_${_name}_prebuilt)
endforeach()

set(_san_flags -fsanitize=address,undefined -fno-sanitize=vptr -fno-sanitize-recover=undefined
               -fno-omit-frame-pointer -O1 -g1)
set(_src ${PROJECT_SOURCE_DIR})
# The readers, instrumented once. The dataset readers come in through tests/fuzz/data/*, which
# compile core/data/files.cpp, images_tables.cpp and text.cpp with the harness entry points.
file(GLOB _san_text_sources ${_src}/core/text/*.cpp)
add_library(sculpt_san_readers OBJECT
  ${_san_text_sources}
  ${_src}/core/data/text_records.cpp ${_src}/core/data/text_cache.cpp
  ${_src}/core/data/text_files.cpp ${_src}/core/data/text_tokenized.cpp
  ${_src}/tests/fuzz/tokenizer/fuzz_tokenizer.cpp ${_src}/tests/fuzz/data/fuzz_data_text.cpp
  ${_src}/core/config/config.cpp ${_src}/core/config/errors.cpp ${_src}/core/config/node.cpp
  ${_src}/core/config/reader.cpp ${_src}/core/config/step_point.cpp ${_src}/core/config/writer.cpp
  ${_src}/core/registry/registry.cpp
  ${_src}/core/io/safetensors.cpp ${_src}/core/io/atomic_file.cpp
  ${_src}/core/data/file_input.cpp
  ${_src}/core/checkpoint/checkpoint.cpp
  ${_src}/core/models/hf/hf_config.cpp
  ${_src}/compression/plugin.cpp
  ${_src}/tests/fuzz/config/fuzz_config.cpp ${_src}/tests/fuzz/safetensors/fuzz_safetensors.cpp
  ${_src}/tests/fuzz/hf_config/fuzz_hf_config.cpp ${_src}/tests/fuzz/data/fuzz_data.cpp
  ${_src}/tests/fuzz/data/fuzz_data_idx.cpp ${_src}/tests/fuzz/data/fuzz_data_csv.cpp
  ${_src}/tests/fuzz/data/fuzz_data_jsonl.cpp ${_src}/tests/fuzz/sanitizer_options.cpp)
foreach(_h config safetensors hf_config data tokenizer)
  set_source_files_properties(${_src}/tests/fuzz/${_h}/fuzz_${_h}.cpp PROPERTIES
                              COMPILE_DEFINITIONS SCULPT_FUZZ_ENTRY=sculpt_fuzz_${_h})
endforeach()
target_include_directories(sculpt_san_readers PRIVATE ${_src})
target_compile_options(sculpt_san_readers PRIVATE ${_san_flags})
target_link_libraries(sculpt_san_readers PRIVATE sculpt_torch nlohmann_json::nlohmann_json
                      yaml-cpp spdlog::spdlog ZLIB::ZLIB ICU::uc ICU::i18n
                      PkgConfig::SCULPT_SAN_PCRE2)
target_compile_definitions(sculpt_san_readers PRIVATE SCULPT_VERSION="${PROJECT_VERSION}")

# sculpt_san_executable(name sources...): instrumented sources + the readers + the prebuilt rest.
function(sculpt_san_executable name)
  add_executable(${name} ${ARGN} $<TARGET_OBJECTS:sculpt_san_readers>)
  target_include_directories(${name} PRIVATE ${_src})
  target_compile_options(${name} PRIVATE ${_san_flags})
  target_link_options(${name} PRIVATE -fsanitize=address,undefined)
  target_link_options(${name} BEFORE PRIVATE
    "SHELL:-Wl,--push-state,--no-as-needed -lstdc++ -Wl,--pop-state")
  target_link_libraries(${name} PRIVATE ${_prebuilt} sculpt_torch nlohmann_json::nlohmann_json
                        yaml-cpp spdlog::spdlog ZLIB::ZLIB CLI11::CLI11 ICU::uc ICU::i18n
                        PkgConfig::SCULPT_SAN_PCRE2 ${CMAKE_DL_LIBS})
  set_target_properties(${name} PROPERTIES BUILD_RPATH ${_lib})
endfunction()

# The sanitized `sculpt` that the process-level tests (plugins) run.
sculpt_san_executable(sculpt-san ${_src}/tests/fuzz/sanitize_main.cpp)

set(_plugins ${SCULPT_MAIN_BUILD}/test-plugins)
file(STRINGS ${_src}/compression/pass.h _line REGEX "^#define SCULPT_PASS_API_VERSION [0-9]+")
string(REGEX REPLACE "^#define SCULPT_PASS_API_VERSION ([0-9]+).*" "\\1" SCULPT_PASS_API_VERSION "${_line}")
sculpt_san_executable(sculpt_sanitize_tests
  ${_src}/tests/fuzz/sanitize_main.cpp ${_src}/tests/support/process.cpp
  ${_src}/tests/fuzz/test_replay.cpp
  ${_src}/tests/unit/test_config_errors.cpp ${_src}/tests/unit/test_config_merge.cpp
  ${_src}/tests/unit/test_file_datasets.cpp ${_src}/tests/unit/test_text_datasets.cpp
  ${_src}/tests/integration/test_plugins.cpp)
target_link_libraries(sculpt_sanitize_tests PRIVATE Catch2::Catch2)
target_compile_definitions(sculpt_sanitize_tests PRIVATE SCULPT_SAN_CATCH
  SCULPT_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
  SCULPT_BIN="$<TARGET_FILE:sculpt-san>"
  SCULPT_SHARED_DATA="${PROJECT_SOURCE_DIR}/../shared/data"
  SCULPT_TEST_PYTHON_EXE=""
  SCULPT_TEST_NOOP_PLUGIN="${_plugins}/libtest_noop.so"
  SCULPT_TEST_NOOP_COPY_PLUGIN="${_plugins}/libtest_noop_copy.so"
  SCULPT_TEST_NO_REGISTER_PLUGIN="${_plugins}/libtest_no_register.so"
  SCULPT_TEST_WRONG_VERSION_PLUGIN="${_plugins}/libtest_wrong_version.so"
  SCULPT_TEST_GROUP_LASSO_PLUGIN="${_plugins}/libtest_group_lasso.so"
  SCULPT_TEST_PASS_API_VERSION=${SCULPT_PASS_API_VERSION})
add_dependencies(sculpt_sanitize_tests sculpt-san)
enable_testing()
catch_discover_tests(sculpt_sanitize_tests TEST_PREFIX "sanitize: "
  PROPERTIES LABELS sanitize
             ENVIRONMENT "SCULPT_TEST_TMP=${CMAKE_BINARY_DIR}/test-tmp;OMP_NUM_THREADS=1;ASAN_OPTIONS=detect_leaks=1:detect_odr_violation=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
