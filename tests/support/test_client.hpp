#pragma once

// A blocking protocol client for end-to-end tests: a TCP socket, Parley's
// own TLS engine (tls::stream, the client side of the same memory-BIO code
// the server uses) and the codec. Every wait is bounded by a deadline and
// fails the test when it passes; ordering is checked with ping/pong
// barriers, never with sleeps.

#include "actors/tls/tls.hpp"
#include "codec/codec.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>

namespace parley::test {

using namespace std::chrono_literals;

class test_client {
 public:
  /// Connects and finishes the TLS handshake. `ca_file`: the server's
  /// certificate (it is self-signed).
  static std::unique_ptr<test_client> connect(uint16_t port,
                                              const std::string& ca_file) {
    tls::client_options o;
    o.ca_file = ca_file;
    auto ctx = tls::context::client(o);
    REQUIRE_MESSAGE(ctx.ok(), ctx.error().to_string());
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) ==
            0);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto c = std::unique_ptr<test_client>(new test_client(fd, *ctx));
    tls::bytes out;
    REQUIRE(c->tls_.start(out).ok());
    c->write_raw(out);
    return c;
  }

  ~test_client() {
    if (fd_ >= 0)
      ::close(fd_);
  }

  /// Sends one frame.
  template<class Frame>
  void send(const Frame& f) {
    codec::buffer b;
    REQUIRE(codec::encode(f, b) == codec::errc::ok);
    send_plain(b);
  }

  /// Sends plaintext bytes as they are (for malformed-input tests).
  void send_plain(const codec::buffer& b) {
    tls::bytes out;
    REQUIRE(tls_.send(b.data(), b.size(), out).ok());
    write_raw(out);
  }

  /// Writes bytes to the socket, unencrypted (garbage below TLS).
  void write_raw(const tls::bytes& b) {
    size_t off = 0;
    while (off < b.size()) {
      auto n = ::send(fd_, b.data() + off, b.size() - off, MSG_NOSIGNAL);
      if (n <= 0)
        return; // peer gone: the reads will tell
      off += static_cast<size_t>(n);
    }
  }

  /// The next frame, or nullopt when the connection closed or the deadline
  /// passed (`timed_out()` tells which).
  std::optional<codec::frame> next(std::chrono::milliseconds within = 10s) {
    auto deadline = std::chrono::steady_clock::now() + within;
    while (frames_.empty()) {
      if (closed_)
        return std::nullopt;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        timed_out_ = true;
        return std::nullopt;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        continue;
      uint8_t buf[16384];
      auto n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) {
        closed_ = true;
        continue;
      }
      tls::bytes plain, out;
      auto st = tls_.receive(buf, static_cast<size_t>(n), plain, out);
      write_raw(out);
      if (!st) {
        tls_error_ = st;
        closed_ = true;
      }
      auto e = parser_.feed(
        plain.data(), plain.size(),
        [&](codec::frame_type t, const uint8_t* body, size_t len) {
          codec::frame f;
          REQUIRE(codec::decode(t, body, len, f) == codec::errc::ok);
          frames_.push_back(std::move(f));
        });
      REQUIRE(e == codec::errc::ok);
    }
    auto f = std::move(frames_.front());
    frames_.pop_front();
    return f;
  }

  /// The next frame, which must be a T.
  template<class T>
  T expect(std::chrono::milliseconds within = 10s) {
    auto f = next(within);
    REQUIRE_MESSAGE(f.has_value(),
                    "expected a frame '"
                      << codec::to_string(T::type) << "', got "
                      << std::string{timed_out_ ? "a timeout" : "EOF"});
    auto* x = std::get_if<T>(&*f);
    REQUIRE_MESSAGE(x != nullptr, "expected '"
                                    << codec::to_string(T::type) << "', got '"
                                    << codec::to_string(codec::type_of(*f))
                                    << "'");
    return std::move(*x);
  }

  /// Round trip: every frame the server sent before answering this ping
  /// is queued afterwards.
  void barrier() {
    uint64_t nonce = ++nonce_;
    send(codec::ping{nonce});
    for (;;) {
      auto f = next();
      REQUIRE(f.has_value());
      if (auto* p = std::get_if<codec::pong>(&*f); p && p->nonce == nonce)
        break;
      held_.push_back(std::move(*f));
    }
    // Put back what arrived before the pong, in order.
    for (auto i = held_.rbegin(); i != held_.rend(); ++i)
      frames_.push_front(std::move(*i));
    held_.clear();
  }

  /// Frames queued right now (call barrier() first).
  size_t queued() const { return frames_.size(); }

  /// Logs in; returns login_ok or fails the test.
  codec::login_ok login(const std::string& app, const std::string& token,
                        const std::string& device, uint32_t window = 0) {
    send(codec::hello{codec::protocol_version, app, token, device, "test",
                      window});
    auto f = next();
    REQUIRE(f.has_value());
    if (auto* bad = std::get_if<codec::login_failed>(&*f))
      FAIL("login failed: " << codec::to_string(bad->reason) << ": "
                            << bad->text);
    auto* ok = std::get_if<codec::login_ok>(&*f);
    REQUIRE(ok != nullptr);
    return *ok;
  }

  /// Waits until the server closes the connection; true if it did.
  bool wait_closed(std::chrono::milliseconds within = 10s) {
    auto deadline = std::chrono::steady_clock::now() + within;
    while (!closed_ && std::chrono::steady_clock::now() < deadline) {
      auto f = next(std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now()));
      if (f)
        held_.push_back(std::move(*f));
    }
    for (auto& f : held_)
      frames_.push_back(std::move(f));
    held_.clear();
    return closed_;
  }

  bool closed() const { return closed_; }
  bool timed_out() const { return timed_out_; }
  const status& tls_error() const { return tls_error_; }

 private:
  test_client(int fd, std::shared_ptr<tls::context> ctx)
    : fd_(fd), tls_(std::move(ctx), "127.0.0.1"),
      parser_(codec::max_frame_body_protocol) {
    // nop
  }

  int fd_;
  tls::stream tls_;
  codec::frame_parser parser_;
  std::deque<codec::frame> frames_;
  std::deque<codec::frame> held_;
  bool closed_ = false;
  bool timed_out_ = false;
  status tls_error_;
  uint64_t nonce_ = 0;
};

} // namespace parley::test
