# Read by ctest before it runs anything (tests/CMakeLists.txt, catch_cases()): asks a Catch2
# test program for its test cases and adds each one as a ctest test of its own, run alone in
# its own process, so that a case can be rerun, timed and reported (passed, failed or skipped)
# by itself.
#
# Set by the includer: exe (the test program), labels (a list), run_serial (TRUE/FALSE),
# skip_code (the exit status of a case that skipped, tests/main.cpp).
#
# Catch2's own catch_discover_tests (Debian's catch2 2.13) is not used: it splits the list of
# names at every ';' (a case name here has one) and flattens list-valued properties such as
# LABELS "integration;root". Names are read line by line here and never pass through a list.

get_filename_component(_target "${exe}" NAME)
if(NOT EXISTS "${exe}")
  add_test("${_target}_NOT_BUILT" "${exe}")
  return()
endif()

execute_process(COMMAND "${exe}" --list-test-names-only
  OUTPUT_VARIABLE _names RESULT_VARIABLE _rc ERROR_VARIABLE _err)
if(_names STREQUAL "" OR NOT _rc MATCHES "^[0-9]+$")
  # a listing that failed shows as a failing test, not as a suite that vanished
  add_test("${_target}_CANNOT_LIST" "${exe}" --list-test-names-only)
  return()
endif()

while(NOT _names STREQUAL "")
  string(FIND "${_names}" "\n" _nl)
  if(_nl EQUAL -1)
    set(_name "${_names}")
    set(_names "")
  else()
    string(SUBSTRING "${_names}" 0 ${_nl} _name)
    math(EXPR _nl "${_nl} + 1")
    string(SUBSTRING "${_names}" ${_nl} -1 _names)
  endif()
  if(_name STREQUAL "")
    continue()
  endif()
  if(_name MATCHES "^\"(#.*)\"$") # Catch quotes a name that starts with '#'
    set(_name "${CMAKE_MATCH_1}")
  endif()
  # The case's name as a Catch test spec: its special characters escaped, so it matches
  # exactly that case, and a leading '-' too, so it is not read as an option ("--set and ...").
  set(_spec "")
  string(LENGTH "${_name}" _len)
  math(EXPR _last "${_len} - 1")
  foreach(_i RANGE 0 ${_last})
    string(SUBSTRING "${_name}" ${_i} 1 _c)
    if(_c STREQUAL "\\" OR _c STREQUAL "," OR _c STREQUAL "[" OR _c STREQUAL "]"
       OR _c STREQUAL "\"" OR _c STREQUAL "~" OR (_i EQUAL 0 AND _c STREQUAL "-"))
      string(APPEND _spec "\\")
    endif()
    string(APPEND _spec "${_c}")
  endforeach()
  add_test("${_name}" "${exe}" "${_spec}")
  set_tests_properties("${_name}" PROPERTIES
    LABELS "${labels}" RUN_SERIAL "${run_serial}" SKIP_RETURN_CODE "${skip_code}")
endwhile()
