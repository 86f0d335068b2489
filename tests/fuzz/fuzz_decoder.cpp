// libFuzzer target for the frame parser and decoder (built with
// -DPARLEY_FUZZ=ON and clang; scripts/fuzz runs it).

#include "tests/fuzz/fuzz_decoder.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  parley::fuzz::run_decoder_property(data, size);
  return 0;
}
