# Compiler settings for Parley's own targets: warnings as errors on our code
# only (dependencies come in as SYSTEM includes), sanitizers, ccache.

find_program(PARLEY_CCACHE ccache)
if(PARLEY_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER "${PARLEY_CCACHE}")
endif()

# parley_target_options(<target>): warnings and sanitizers for one target.
function(parley_target_options target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror
                         -Wno-error=deprecated-declarations)
  if(PARLEY_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${PARLEY_SANITIZE}
                           -fno-omit-frame-pointer -fno-sanitize-recover=all)
    target_link_options(${target} PRIVATE -fsanitize=${PARLEY_SANITIZE})
  endif()
endfunction()
