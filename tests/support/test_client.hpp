#pragma once

// A blocking protocol client for end-to-end tests: a TCP socket, Parley's
// own TLS engine (tls::stream, the client side of the same memory-BIO code
// the server uses) and the codec. Every wait is bounded by a deadline and
// fails the test when it passes; ordering is checked with ping/pong
// barriers, never with sleeps.

#include "actors/tls/tls.hpp"
#include "actors/tls/tls_socket.hpp"
#include "codec/codec.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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
    auto s = tls::tls_socket::connect("127.0.0.1", port, *ctx, 10s);
    REQUIRE_MESSAGE(s.ok(), s.error().to_string());
    return std::unique_ptr<test_client>(new test_client(std::move(*s)));
  }

  /// Sends one frame.
  template<class Frame>
  void send(const Frame& f) {
    sock_->send(f); // a broken connection shows in the next receive
  }

  /// Sends plaintext bytes as they are (for malformed-input tests).
  void send_plain(const codec::buffer& b) {
    sock_->send_plain(b.data(), b.size());
  }

  /// Writes bytes to the socket, unencrypted (garbage below TLS).
  void write_raw(const tls::bytes& b) { sock_->write_raw(b); }

  /// The next frame, or nullopt when the connection closed or the deadline
  /// passed (`timed_out()` tells which).
  std::optional<codec::frame> next(std::chrono::milliseconds within = 10s) {
    auto f = sock_->receive(within);
    if (f)
      return std::move(*f);
    timed_out_ = f.error().code() == status_code::timeout;
    return std::nullopt;
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
    std::vector<codec::frame> held;
    for (;;) {
      auto f = next();
      REQUIRE(f.has_value());
      if (auto* p = std::get_if<codec::pong>(&*f); p && p->nonce == nonce)
        break;
      held.push_back(std::move(*f));
    }
    // Put back what arrived before the pong, in order.
    auto& q = sock_->queue();
    for (auto i = held.rbegin(); i != held.rend(); ++i)
      q.push_front(std::move(*i));
  }

  /// Frames queued right now (call barrier() first).
  size_t queued() const { return sock_->queue().size(); }

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

  /// Waits until the server closes the connection; true if it did. Frames
  /// that arrive meanwhile stay queued.
  bool wait_closed(std::chrono::milliseconds within = 10s) {
    auto deadline = std::chrono::steady_clock::now() + within;
    std::vector<codec::frame> held;
    while (!sock_->closed() && std::chrono::steady_clock::now() < deadline) {
      auto f = next(std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now()));
      if (f)
        held.push_back(std::move(*f));
    }
    for (auto& f : held)
      sock_->queue().push_back(std::move(f));
    return sock_->closed();
  }

  bool closed() const { return sock_->closed(); }
  bool timed_out() const { return timed_out_; }

 private:
  explicit test_client(std::unique_ptr<tls::tls_socket> s)
    : sock_(std::move(s)) {
    // nop
  }

  std::unique_ptr<tls::tls_socket> sock_;
  bool timed_out_ = false;
  uint64_t nonce_ = 0;
};

/// The answer to message `mid`: the immediate answer (seq 0), or its SENT
/// as the sending device's own log record (a compact status_update with
/// seq > 0), which the server sends instead of the answer when both leave
/// in one write (PROTOCOL.md 6.5). Skips the other log records (receipts,
/// other messages' own records).
inline codec::status_update answer(test_client& c, uint64_t mid) {
  for (;;) {
    auto st = c.expect<codec::status_update>();
    if (st.mid == mid &&
        (st.seq == 0 || st.value == codec::message_status::sent))
      return st;
  }
}

} // namespace parley::test
