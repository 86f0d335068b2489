# ctest's package_test: installs the build into a fresh prefix, builds
# examples/anatomy.cpp in a separate project with find_package(Parley), runs
# it, and checks the pkg-config file.
#   cmake -DBUILD=... -DSOURCE=... -P run.cmake
set(work "${BUILD}/package-test")
file(REMOVE_RECURSE "${work}")
set(prefix "${work}/prefix")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD}" --prefix "${prefix}"
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S "${SOURCE}/tests/package"
                  -B "${work}/consumer" -DCMAKE_PREFIX_PATH=${prefix}
                  -DANATOMY_SOURCE=${SOURCE}/examples/anatomy.cpp
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the consumer project failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${work}/consumer"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the consumer project failed (${rc})")
endif()
execute_process(COMMAND "${work}/consumer/anatomy" "${work}/data"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0 OR NOT out MATCHES "message [0-9]+: sent")
  message(FATAL_ERROR "the installed anatomy example failed (${rc})")
endif()
find_program(PKG_CONFIG pkg-config REQUIRED)
execute_process(COMMAND ${CMAKE_COMMAND} -E env
                  PKG_CONFIG_PATH=${prefix}/lib/pkgconfig:${prefix}/lib/x86_64-linux-gnu/pkgconfig
                  ${PKG_CONFIG} --libs parley
                RESULT_VARIABLE rc OUTPUT_VARIABLE libs)
if(NOT rc EQUAL 0 OR NOT libs MATCHES "-lparley")
  message(FATAL_ERROR "pkg-config does not know parley: ${libs}")
endif()
message("package test passed: find_package(Parley) and pkg-config work")
