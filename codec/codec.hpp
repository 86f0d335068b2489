#pragma once

// Encoding and decoding of Parley frames (docs/PROTOCOL.md).
//
//   std::vector<uint8_t> out;
//   codec::encode(codec::ping{42}, out);          // appends header + body
//
//   codec::frame_parser parser{max_body};         // one per connection
//   auto err = parser.feed(data, n, [&](codec::frame_type t,
//                                       const uint8_t* body, size_t len) {
//     codec::frame f;
//     if (auto e = codec::decode(t, body, len, f); e != codec::errc::ok) ...
//   });
//
// Pure C++: no sockets, no actors. Thread-safety: functions are reentrant;
// a frame_parser is used by one thread at a time.

#include "codec/frames.hpp"
#include "codec/protocol.hpp"

#include <parley/status.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace parley::codec {

/// A byte buffer frames are encoded into.
using buffer = std::vector<uint8_t>;

/// Every way encoding or decoding can fail, named (docs/PROTOCOL.md §Errors).
enum class errc : uint8_t {
  ok = 0,
  truncated = 1,       ///< The body ends inside a field.
  frame_too_large = 2, ///< The header announces a body above the limit.
  unknown_type = 3,    ///< The type byte names no frame.
  field_too_long = 4,  ///< A string or bytes field exceeds its limit.
  list_too_long = 5,   ///< A list has more elements than allowed.
  bad_magic = 6,       ///< A hello/admin_hello without "PRLY".
  invalid_value = 7,   ///< An enum or bool holds an undefined value.
  trailing_bytes = 8,  ///< Bytes left over after the last field.
  parser_failed = 9,   ///< feed() after an earlier error.
};

/// Lower-case name of `e` ("frame_too_large").
std::string_view to_string(errc e) noexcept;

/// A sentence for users: what is wrong with the input.
std::string_view describe(errc e) noexcept;

/// Converts to the shared status type (protocol_error, or OK).
parley::status to_status(errc e, std::string_view context = {});

/// Appends the encoded frame (header and body) to `out`. Fails with
/// field_too_long or list_too_long when a field exceeds its protocol limit,
/// or frame_too_large when the body exceeds `max_body`; `out` is then
/// unchanged.
template<class Frame>
errc encode(const Frame& f, buffer& out,
            uint32_t max_body = max_frame_body_protocol);

/// Same for a frame variant.
errc encode(const frame& f, buffer& out,
            uint32_t max_body = max_frame_body_protocol);

/// Size of the encoded body of `f`, or 0 with `err` set on failure.
template<class Frame>
size_t encoded_body_size(const Frame& f, errc& err);

/// Decodes a body of a known frame type into `out`, reusing its memory
/// (strings keep their capacity). The body must be consumed exactly.
template<class Frame>
errc decode_body(const uint8_t* body, size_t len, Frame& out);

/// Decodes a body of type `t` into `out`. When `out` already holds that
/// alternative its memory is reused.
errc decode(frame_type t, const uint8_t* body, size_t len, frame& out);

/// Incremental splitter of a byte stream into frames, in the style of
/// nats-server's parser: the state lives here, so a partial read simply
/// continues with the next call. A complete frame inside one input chunk is
/// handed over without a copy; only a frame split across chunks is buffered,
/// and the header is checked (type known, length within the limit) before a
/// byte of its body is buffered.
class frame_parser {
 public:
  /// `max_body` is the largest accepted body, at most max_frame_body_protocol.
  explicit frame_parser(uint32_t max_body = default_max_frame_body) noexcept
    : max_body_(max_body > max_frame_body_protocol ? max_frame_body_protocol
                                                   : max_body) {
    // nop
  }

  /// Consumes `n` bytes. Calls `on_frame(frame_type, const uint8_t* body,
  /// size_t len)` for each complete frame, in order; `body` is valid only
  /// during the call. `on_frame` may return void, or bool (false stops the
  /// parser, which then answers parser_failed). Returns errc::ok, or the
  /// first error, after which the parser stays failed: close the connection.
  template<class OnFrame>
  errc feed(const uint8_t* data, size_t n, OnFrame&& on_frame);

  /// Bytes held of an incomplete frame.
  size_t buffered() const noexcept { return have_; }

  /// True after an error.
  bool failed() const noexcept { return failed_; }

  /// The body limit in force.
  uint32_t max_body() const noexcept { return max_body_; }

 private:
  errc check_header(const uint8_t* h, frame_type& t, uint32_t& len) noexcept {
    if (!is_known_frame_type(h[0]))
      return errc::unknown_type;
    len = uint32_t{h[1]} | (uint32_t{h[2]} << 8) | (uint32_t{h[3]} << 16);
    if (len > max_body_)
      return errc::frame_too_large;
    t = static_cast<frame_type>(h[0]);
    return errc::ok;
  }

  template<class OnFrame>
  static bool call(OnFrame& f, frame_type t, const uint8_t* b, size_t n) {
    if constexpr (std::is_same_v<decltype(f(t, b, n)), bool>)
      return f(t, b, n);
    else {
      f(t, b, n);
      return true;
    }
  }

  uint32_t max_body_;
  bool failed_ = false;
  uint8_t header_[header_size] = {};
  size_t have_ = 0; ///< Bytes of the current frame received (header incl.).
  uint32_t body_len_ = 0;
  frame_type type_ = frame_type::ping;
  buffer body_; ///< Body of a frame split across feeds.
};

// -- inline implementation
// ---------------------------------------------------------

template<class OnFrame>
errc frame_parser::feed(const uint8_t* data, size_t n, OnFrame&& on_frame) {
  if (failed_)
    return errc::parser_failed;
  auto fail = [this](errc e) {
    failed_ = true;
    return e;
  };
  while (n > 0) {
    if (have_ == 0 && n >= header_size) {
      // Fast path: the header is in the input.
      frame_type t;
      uint32_t len;
      if (auto e = check_header(data, t, len); e != errc::ok)
        return fail(e);
      if (n - header_size >= len) {
        if (!call(on_frame, t, data + header_size, len))
          return fail(errc::parser_failed);
        data += header_size + len;
        n -= header_size + len;
        continue;
      }
    }
    // Slow path: a frame split across feeds.
    if (have_ < header_size) {
      size_t take = header_size - have_ < n ? header_size - have_ : n;
      std::memcpy(header_ + have_, data, take);
      have_ += take;
      data += take;
      n -= take;
      // Refuse garbage from its first byte, not after a whole header.
      if (!is_known_frame_type(header_[0]))
        return fail(errc::unknown_type);
      if (have_ < header_size)
        return errc::ok;
      if (auto e = check_header(header_, type_, body_len_); e != errc::ok)
        return fail(e);
      body_.clear();
      body_.reserve(body_len_);
    }
    size_t missing = body_len_ - body_.size();
    size_t take = missing < n ? missing : n;
    body_.insert(body_.end(), data, data + take);
    data += take;
    n -= take;
    if (body_.size() == body_len_) {
      have_ = 0;
      if (!call(on_frame, type_, body_.data(), body_.size()))
        return fail(errc::parser_failed);
    } else {
      have_ = header_size + body_.size();
    }
  }
  return errc::ok;
}

} // namespace parley::codec

#include "codec/codec_impl.hpp"
