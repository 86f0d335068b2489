// Writes the decoder's seed corpus: one file per frame type ("seed-<type>",
// a control byte 0 then the encoded sample frame) and one with the whole
// stream split in the middle. Usage: make_corpus DIR

#include "codec/codec.hpp"
#include "tests/codec/samples.hpp"

#include <cstdio>
#include <fstream>
#include <string>

int main(int argc, char** argv) {
  using namespace parley::codec;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  auto write = [&](const std::string& name, const buffer& bytes) {
    std::ofstream out{dir + "/" + name, std::ios::binary | std::ios::trunc};
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    return static_cast<bool>(out);
  };
  buffer stream{0x40};
  for (auto& f : sample_frames()) {
    buffer one{0};
    if (encode(f, one) != errc::ok || encode(f, stream) != errc::ok)
      return 1;
    if (!write("seed-" + std::string{to_string(type_of(f))}, one))
      return 1;
  }
  return write("stream-all", stream) ? 0 : 1;
}
