#pragma once

// A blocking TLS connection that speaks frames: a TCP socket, a tls::stream
// and a frame parser. For short-lived tools (the admin client) and tests;
// the SDK and the server use actors instead. No CAF here.
//
// Thread-safety: one thread at a time per object.

#include "actors/tls/tls.hpp"
#include "codec/codec.hpp"

#include <parley/status.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>

namespace parley::tls {

class tls_socket {
 public:
  /// Connects to host:port within `timeout` and finishes the TLS handshake.
  /// `sni` defaults to `host`. Errors say what to check (server running,
  /// certificate trusted...).
  static result<std::unique_ptr<tls_socket>>
  connect(const std::string& host, uint16_t port, std::shared_ptr<context> ctx,
          std::chrono::milliseconds timeout);

  ~tls_socket();
  tls_socket(const tls_socket&) = delete;
  tls_socket& operator=(const tls_socket&) = delete;

  /// Encodes and sends one frame.
  template<class Frame>
  status send(const Frame& f) {
    codec::buffer b;
    if (auto e = codec::encode(f, b); e != codec::errc::ok)
      return codec::to_status(e, "encoding a frame");
    return send_plain(b.data(), b.size());
  }

  /// Sends plaintext bytes as they are.
  status send_plain(const uint8_t* data, size_t n);

  /// Writes bytes to the socket below TLS.
  status write_raw(const bytes& b);

  /// The next frame within `timeout`. Errors: timeout, unavailable (the
  /// peer closed), protocol_error, unauthenticated (certificate).
  result<codec::frame> receive(std::chrono::milliseconds timeout);

  /// True once the peer closed (or the stream failed).
  bool closed() const noexcept { return closed_; }

  /// Frames received and not yet taken.
  std::deque<codec::frame>& queue() noexcept { return frames_; }

 private:
  tls_socket(int fd, std::shared_ptr<context> ctx, const std::string& sni);
  status pump(std::chrono::milliseconds timeout);

  int fd_;
  stream tls_;
  codec::frame_parser parser_;
  std::deque<codec::frame> frames_;
  bool closed_ = false;
  status error_;
};

} // namespace parley::tls
