// The incremental frame parser: every split point of a stream, and the
// header checks that run before anything is buffered.

#include "codec/codec.hpp"
#include "tests/codec/samples.hpp"

#include <doctest/doctest.h>

#include <random>

using namespace parley::codec;

namespace {

struct collected {
  std::vector<frame> frames;
  errc decode_error = errc::ok;
};

/// Feeds `stream` in the given chunk sizes; decodes every frame.
errc feed_chunks(frame_parser& p, const buffer& stream,
                 const std::vector<size_t>& cuts, collected& out) {
  size_t pos = 0;
  auto on_frame = [&](frame_type t, const uint8_t* body, size_t len) {
    frame f;
    auto e = decode(t, body, len, f);
    if (e != errc::ok)
      out.decode_error = e;
    out.frames.push_back(std::move(f));
  };
  for (size_t cut : cuts) {
    if (auto e = p.feed(stream.data() + pos, cut - pos, on_frame);
        e != errc::ok)
      return e;
    pos = cut;
  }
  return p.feed(stream.data() + pos, stream.size() - pos, on_frame);
}

buffer sample_stream() {
  buffer stream;
  for (auto& f : sample_frames())
    REQUIRE(encode(f, stream) == errc::ok);
  return stream;
}

void check_all_frames(const collected& c) {
  auto expected = sample_frames();
  REQUIRE(c.frames.size() == expected.size());
  CHECK(c.decode_error == errc::ok);
  for (size_t i = 0; i < expected.size(); ++i) {
    buffer a, b;
    REQUIRE(encode(c.frames[i], a) == errc::ok);
    REQUIRE(encode(expected[i], b) == errc::ok);
    CHECK(a == b);
  }
}

} // namespace

TEST_CASE("a stream of every frame type parses in one feed") {
  auto stream = sample_stream();
  frame_parser p{max_frame_body_protocol};
  collected c;
  REQUIRE(feed_chunks(p, stream, {}, c) == errc::ok);
  check_all_frames(c);
  CHECK(p.buffered() == 0);
}

TEST_CASE("every split point of the stream gives the same frames") {
  auto stream = sample_stream();
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    frame_parser p{max_frame_body_protocol};
    collected c;
    REQUIRE(feed_chunks(p, stream, {cut}, c) == errc::ok);
    check_all_frames(c);
    CHECK(p.buffered() == 0);
  }
}

TEST_CASE("one byte at a time gives the same frames") {
  auto stream = sample_stream();
  std::vector<size_t> cuts;
  for (size_t i = 1; i < stream.size(); ++i)
    cuts.push_back(i);
  frame_parser p{max_frame_body_protocol};
  collected c;
  REQUIRE(feed_chunks(p, stream, cuts, c) == errc::ok);
  check_all_frames(c);
}

TEST_CASE("random three-way splits give the same frames") {
  auto stream = sample_stream();
  std::mt19937 rng{42}; // fixed seed: deterministic
  std::uniform_int_distribution<size_t> pick{0, stream.size()};
  for (int round = 0; round < 500; ++round) {
    size_t a = pick(rng), b = pick(rng);
    if (a > b)
      std::swap(a, b);
    frame_parser p{max_frame_body_protocol};
    collected c;
    REQUIRE(feed_chunks(p, stream, {a, b}, c) == errc::ok);
    check_all_frames(c);
  }
}

TEST_CASE("an oversized length is refused from the header alone") {
  frame_parser p{1024};
  // Type send, length 1025: refused before any body byte arrives.
  buffer header{static_cast<uint8_t>(frame_type::send), 0x01, 0x04, 0x00};
  int frames = 0;
  auto count = [&](frame_type, const uint8_t*, size_t) { ++frames; };
  SUBCASE("header split in two") {
    CHECK(p.feed(header.data(), 2, count) == errc::ok);
    CHECK(p.feed(header.data() + 2, 2, count) == errc::frame_too_large);
  }
  SUBCASE("header whole") {
    CHECK(p.feed(header.data(), 4, count) == errc::frame_too_large);
  }
  CHECK(p.buffered() <= header_size);
  CHECK(frames == 0);
  CHECK(p.failed());
  // A failed parser stays failed.
  CHECK(p.feed(header.data(), 1, count) == errc::parser_failed);
}

TEST_CASE("a length at the limit is accepted") {
  frame_parser p{16};
  upload_chunk c{1, 2, ""}; // body 8 + 8 + 4 = 20 bytes
  buffer out;
  REQUIRE(encode(c, out) == errc::ok);
  CHECK(p.feed(out.data(), out.size(), [](auto...) {}) ==
        errc::frame_too_large);
  frame_parser q{20};
  int n = 0;
  CHECK(q.feed(out.data(), out.size(), [&](auto...) { ++n; }) == errc::ok);
  CHECK(n == 1);
}

TEST_CASE("the limit cannot exceed the protocol's") {
  frame_parser p{0xffffffffu};
  CHECK(p.max_body() == max_frame_body_protocol);
}

TEST_CASE("garbage and unknown types are unknown_type") {
  frame_parser p;
  std::string http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(p.feed(reinterpret_cast<const uint8_t*>(http.data()), http.size(),
               [](auto...) {}) == errc::unknown_type);
  frame_parser q;
  buffer zero{0x00, 0, 0, 0};
  CHECK(q.feed(zero.data(), zero.size(), [](auto...) {}) == errc::unknown_type);
  frame_parser r;
  buffer ff{0xff};
  CHECK(r.feed(ff.data(), ff.size(), [](auto...) {}) == errc::unknown_type);
}

TEST_CASE("frames before an error are delivered, nothing after it") {
  buffer stream;
  REQUIRE(encode(ping{1}, stream) == errc::ok);
  stream.push_back(0xee); // unknown type
  REQUIRE(encode(ping{2}, stream) == errc::ok);
  frame_parser p;
  std::vector<uint64_t> nonces;
  auto err = p.feed(stream.data(), stream.size(),
                    [&](frame_type t, const uint8_t* b, size_t n) {
                      ping x;
                      REQUIRE(t == frame_type::ping);
                      REQUIRE(decode_body(b, n, x) == errc::ok);
                      nonces.push_back(x.nonce);
                    });
  CHECK(err == errc::unknown_type);
  CHECK(nonces == std::vector<uint64_t>{1});
}

TEST_CASE("a callback returning false stops the parser") {
  buffer stream;
  REQUIRE(encode(ping{1}, stream) == errc::ok);
  REQUIRE(encode(ping{2}, stream) == errc::ok);
  frame_parser p;
  int n = 0;
  CHECK(p.feed(stream.data(), stream.size(), [&](auto...) {
    ++n;
    return false;
  }) == errc::parser_failed);
  CHECK(n == 1);
}

TEST_CASE("a partial frame is held until it completes") {
  buffer stream;
  REQUIRE(encode(sample_chat_send(), stream) == errc::ok);
  frame_parser p;
  int n = 0;
  auto count = [&](auto...) { ++n; };
  REQUIRE(p.feed(stream.data(), 10, count) == errc::ok);
  CHECK(n == 0);
  CHECK(p.buffered() == 10);
  REQUIRE(p.feed(stream.data() + 10, stream.size() - 10, count) == errc::ok);
  CHECK(n == 1);
  CHECK(p.buffered() == 0);
}
