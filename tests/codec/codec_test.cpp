// Encode/decode of every frame type, and the named error of every kind of
// malformed body.

#include "codec/codec.hpp"
#include "tests/codec/samples.hpp"

#include <doctest/doctest.h>

#include <set>

using namespace parley::codec;

namespace {

bool same(const frame& a, const frame& b) {
  if (a.index() != b.index())
    return false;
  return std::visit(
    [&](const auto& x) {
      using T = std::decay_t<decltype(x)>;
      return x == std::get<T>(b);
    },
    a);
}

/// Encodes `f`, checks the header, returns the body.
buffer body_of(const frame& f) {
  buffer out;
  REQUIRE(encode(f, out) == errc::ok);
  REQUIRE(out.size() >= header_size);
  CHECK(out[0] == static_cast<uint8_t>(type_of(f)));
  size_t len = out[1] | (out[2] << 8) | (out[3] << 16);
  CHECK(len == out.size() - header_size);
  return buffer(out.begin() + header_size, out.end());
}

} // namespace

TEST_CASE("samples cover every frame type exactly once") {
  std::set<size_t> seen;
  for (auto& f : sample_frames())
    CHECK(seen.insert(f.index()).second);
  CHECK(seen.size() == std::variant_size_v<frame>);
}

TEST_CASE("every frame type round-trips through encode and decode") {
  for (auto& f : sample_frames()) {
    CAPTURE(to_string(type_of(f)));
    auto body = body_of(f);
    frame out;
    REQUIRE(decode(type_of(f), body.data(), body.size(), out) == errc::ok);
    CHECK(type_of(out) == type_of(f));
    CHECK(same(out, f));
    // Decoding into a frame that already holds that alternative reuses it
    // and must overwrite every field.
    frame again = out;
    REQUIRE(decode(type_of(f), body.data(), body.size(), again) == errc::ok);
    CHECK(same(again, f));
  }
}

TEST_CASE("decoding overwrites optional and list fields of a reused frame") {
  message with_file = sample_message(1);
  message plain;
  plain.seq = 2;
  buffer out;
  REQUIRE(encode(plain, out) == errc::ok);
  frame f = with_file;
  REQUIRE(decode(frame_type::message, out.data() + header_size,
                 out.size() - header_size, f) == errc::ok);
  CHECK(!std::get<message>(f).file.has_value());
  CHECK(std::get<message>(f).payload.empty());
  CHECK(std::get<message>(f).seq == 2);
}

TEST_CASE("a default frame of every type round-trips too") {
  for (auto& sample : sample_frames()) {
    frame f = std::visit(
      [](const auto& x) -> frame { return std::decay_t<decltype(x)>{}; },
      sample);
    auto body = body_of(f);
    frame out;
    REQUIRE(decode(type_of(f), body.data(), body.size(), out) == errc::ok);
    CHECK(same(out, f));
  }
}

TEST_CASE("integers are little-endian and strings length-prefixed") {
  buffer out;
  REQUIRE(encode(ping{0x0102030405060708ull}, out) == errc::ok);
  CHECK(out == buffer{0x04, 8, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1});
  out.clear();
  REQUIRE(encode(read{"ab", 0x01020304, 5}, out) == errc::ok);
  CHECK(out == buffer{0x14, 16, 0, 0, 2, 0, 'a', 'b', 4, 3,
                      2,    1,  5, 0, 0, 0, 0,   0,   0, 0});
}

TEST_CASE("every truncation of every body is reported as truncated") {
  for (auto& f : sample_frames()) {
    CAPTURE(to_string(type_of(f)));
    auto body = body_of(f);
    for (size_t cut = 0; cut < body.size(); ++cut) {
      frame out;
      auto err = decode(type_of(f), body.data(), cut, out);
      // A cut inside the hello magic is still truncation, never bad_magic.
      CHECK(err == errc::truncated);
    }
  }
}

TEST_CASE("bytes after the last field are trailing_bytes") {
  for (auto& f : sample_frames()) {
    auto body = body_of(f);
    body.push_back(0);
    frame out;
    CHECK(decode(type_of(f), body.data(), body.size(), out) ==
          errc::trailing_bytes);
  }
}

TEST_CASE("a hello without the magic is bad_magic") {
  auto body = body_of(hello{});
  body[0] = 'G'; // "GET ..."
  frame out;
  CHECK(decode(frame_type::hello, body.data(), body.size(), out) ==
        errc::bad_magic);
  auto admin = body_of(admin_hello{});
  admin[3] ^= 0xff;
  CHECK(decode(frame_type::admin_hello, admin.data(), admin.size(), out) ==
        errc::bad_magic);
}

TEST_CASE("undefined enum and bool values are invalid_value") {
  frame out;
  SUBCASE("login failure reason 0") {
    auto body = body_of(login_failed{});
    body[0] = 0;
    CHECK(decode(frame_type::login_failed, body.data(), body.size(), out) ==
          errc::invalid_value);
  }
  SUBCASE("message status 0x7f") {
    auto body = body_of(status_update{});
    // seq(8) mid(8) peer(2) group(4) member(2) -> value at 24
    body[24] = 0x7f;
    CHECK(decode(frame_type::status_update, body.data(), body.size(), out) ==
          errc::invalid_value);
  }
  SUBCASE("bool 2") {
    auto page = body_of(sync_page{});
    page[8] = 2; // complete
    CHECK(decode(frame_type::sync_page, page.data(), page.size(), out) ==
          errc::invalid_value);
  }
  SUBCASE("status code 200") {
    auto body = body_of(server_error{});
    body[0] = 200;
    CHECK(decode(frame_type::server_error, body.data(), body.size(), out) ==
          errc::invalid_value);
  }
  SUBCASE("optional presence byte 7") {
    auto body = body_of(send{});
    body.back() = 7;
    CHECK(decode(frame_type::send, body.data(), body.size(), out) ==
          errc::invalid_value);
  }
}

TEST_CASE("fields beyond their limits are refused by encode and decode") {
  send s;
  s.peer.assign(max_address + 1, 'a');
  buffer out;
  CHECK(encode(s, out) == errc::field_too_long);
  CHECK(out.empty());

  // Forge the same frame by hand: mid, then a peer length of 65.
  buffer body(8, 0);
  body.push_back(static_cast<uint8_t>(max_address + 1));
  body.push_back(0);
  body.insert(body.end(), max_address + 1, 'a');
  frame f;
  CHECK(decode(frame_type::send, body.data(), body.size(), f) ==
        errc::field_too_long);

  s.peer = "bob";
  s.payload.assign(max_payload + 1, 'x');
  CHECK(encode(s, out) == errc::field_too_long);
}

TEST_CASE("a declared length beyond the body is truncated, not allocated") {
  // A payload length of 200 KiB inside a 30-byte body.
  auto body = body_of(send{});
  // mid(8) peer(2) group(4) flags(2) expiry(4) kind(2) reply(8) -> len at 30
  body[30] = 0x00;
  body[31] = 0x20;
  body[32] = 0x03;
  frame f;
  CHECK(decode(frame_type::send, body.data(), body.size(), f) ==
        errc::truncated);
}

TEST_CASE("lists beyond their limits are list_too_long") {
  presence_subscribe p;
  p.peers.assign(max_list + 1, "x");
  buffer out;
  CHECK(encode(p, out) == errc::list_too_long);
  buffer body{1, 0x11, 0x27}; // subscribe, count 10001
  frame f;
  CHECK(decode(frame_type::presence_subscribe, body.data(), body.size(), f) ==
        errc::list_too_long);
  buffer huge_count{1, 0x10, 0x27}; // count 10000, no elements
  CHECK(decode(frame_type::presence_subscribe, huge_count.data(),
               huge_count.size(), f) == errc::truncated);
}

TEST_CASE("admin users add takes at most max_users_add addresses") {
  admin_users_add a{1, "demo", {}, 0};
  a.addresses.assign(max_users_add + 1, "x");
  buffer out;
  CHECK(encode(a, out) == errc::list_too_long);
  a.addresses.pop_back();
  REQUIRE(encode(a, out) == errc::ok);
  frame f;
  CHECK(decode(frame_type::admin_users_add, out.data() + header_size,
               out.size() - header_size, f) == errc::ok);
  // The count, patched past the limit, is refused before the elements.
  auto count_at = header_size + 8 + 2 + 4; // req, "demo"
  REQUIRE(out[count_at] == (max_users_add & 0xff));
  out[count_at] = (max_users_add + 1) & 0xff;
  CHECK(decode(frame_type::admin_users_add, out.data() + header_size,
               out.size() - header_size, f) == errc::list_too_long);
}

TEST_CASE("encode refuses a body above the given maximum") {
  upload_chunk c;
  c.data.assign(1000, 'x');
  buffer out;
  CHECK(encode(c, out, 100) == errc::frame_too_large);
  CHECK(out.empty());
  CHECK(encode(c, out, 2000) == errc::ok);
}

TEST_CASE("encode appends to what the buffer holds") {
  buffer out{9, 9};
  REQUIRE(encode(ack{1}, out) == errc::ok);
  CHECK(out.size() == 2 + header_size + 8);
  CHECK(out[0] == 9);
  CHECK(out[2] == static_cast<uint8_t>(frame_type::ack));
}

TEST_CASE("names and descriptions exist for every error and frame type") {
  for (int e = 0; e <= static_cast<int>(errc::parser_failed); ++e) {
    CHECK(to_string(static_cast<errc>(e)) != "unknown");
    CHECK(describe(static_cast<errc>(e)) != "unknown error");
  }
  for (auto& f : sample_frames())
    CHECK(to_string(type_of(f)) != "unknown");
  CHECK(to_string(message_status::inbox_full) == "inbox_full");
  CHECK(to_string(login_failure_reason::other_app) == "other_app");
  CHECK(to_string(goodbye_reason::shutdown) == "shutdown");
  auto st = to_status(errc::frame_too_large, "reading from 127.0.0.1");
  CHECK(st.code() == parley::status_code::protocol_error);
  CHECK(st.message().find("frame_too_large") != std::string::npos);
  CHECK(st.message().find("127.0.0.1") != std::string::npos);
  CHECK(to_status(errc::ok).ok());
}

TEST_CASE("message status numbers are Mesibo's") {
  CHECK(static_cast<int>(message_status::sent) == 1);
  CHECK(static_cast<int>(message_status::delivered) == 2);
  CHECK(static_cast<int>(message_status::read) == 3);
  CHECK(static_cast<int>(message_status::user_offline) == 0x81);
  CHECK(static_cast<int>(message_status::inbox_full) == 0x82);
  CHECK(static_cast<int>(message_status::invalid_dest) == 0x83);
  CHECK(static_cast<int>(message_status::expired) == 0x84);
  CHECK(static_cast<int>(message_status::not_member) == 0x91);
  CHECK(is_failure(message_status::expired));
  CHECK(!is_failure(message_status::read));
}
