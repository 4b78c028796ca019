# ctest helper script: run CMD (a ;-list), require exit code CODE and, if given,
# that stdout+stderr match the regex MATCH.  Used for bad-usage / bad-input tests.
execute_process(COMMAND ${CMD} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT "${rc}" STREQUAL "${CODE}")
  message(FATAL_ERROR "expected exit code ${CODE}, got ${rc}\nstdout: ${out}\nstderr: ${err}")
endif()
if(DEFINED MATCH AND NOT "${out}${err}" MATCHES "${MATCH}")
  message(FATAL_ERROR "output does not match '${MATCH}'\nstdout: ${out}\nstderr: ${err}")
endif()
