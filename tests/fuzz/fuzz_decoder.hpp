#pragma once

// The decoder fuzz property, shared by the libFuzzer target
// (fuzz_decoder.cpp) and the deterministic replay in the normal test suite
// (fuzz_replay_test.cpp).
//
// Any byte string fed to a frame_parser, split anywhere, must: never crash or
// read out of bounds (ASan/UBSan builds check), end in ok or a named error,
// and every frame that decodes must re-encode to a body that decodes to the
// same bytes again (decode and encode agree).

#include "codec/codec.hpp"

#include <cstdint>
#include <cstdlib>

namespace parley::fuzz {

inline void check(bool ok) {
  if (!ok)
    std::abort();
}

/// Runs the property on one input. Returns the number of frames decoded.
inline size_t run_decoder_property(const uint8_t* data, size_t size) {
  using namespace parley::codec;
  if (size == 0)
    return 0;
  // First byte picks the split point and the limit, the rest is the stream.
  uint8_t ctl = data[0];
  ++data;
  --size;
  uint32_t max_body = (ctl & 0x80) ? 64 : default_max_frame_body;
  size_t split = size == 0 ? 0 : (static_cast<size_t>(ctl & 0x7f) * size) / 127;
  frame_parser parser{max_body};
  size_t decoded = 0;
  frame f;
  buffer again;
  auto on_frame = [&](frame_type t, const uint8_t* body, size_t len) {
    check(len <= max_body);
    auto e = decode(t, body, len, f);
    if (e != errc::ok) {
      check(to_string(e) != "unknown");
      return;
    }
    ++decoded;
    check(type_of(f) == t);
    again.clear();
    check(encode(f, again) == errc::ok);
    check(again.size() == header_size + len);
    check(std::equal(again.begin() + header_size, again.end(), body));
  };
  auto e = parser.feed(data, split, on_frame);
  if (e == errc::ok)
    e = parser.feed(data + split, size - split, on_frame);
  check(to_string(e) != "unknown");
  check(parser.buffered() <= header_size + size_t{max_body});
  return decoded;
}

} // namespace parley::fuzz
