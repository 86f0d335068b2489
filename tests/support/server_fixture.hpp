#pragma once

// The fixture of the server end-to-end tests: a real parley::server on
// loopback (port 0, a temporary data directory, a clock tests can move) with
// app "demo" and users alice and bob, plus helpers to speak to it with
// test_client. Used by tests/e2e/server_test.cpp and security_test.cpp.

#include "tests/support/temp_dir.hpp"
#include "tests/support/test_client.hpp"

#include <parley/server.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <functional>

namespace parley::test {

using codec::message_status;

struct fixture {
  temp_dir dir;
  /// Added to the system clock: tests move the server's time forward.
  std::shared_ptr<std::atomic<uint64_t>> skew_ms =
    std::make_shared<std::atomic<uint64_t>>(0);
  server_options opts;
  std::unique_ptr<server> srv;
  std::string alice_token;
  std::string bob_token;

  explicit fixture(std::shared_ptr<server_hooks> hooks = nullptr,
                   std::function<void(server_options&)> tweak = nullptr) {
    opts.port = 0;
    opts.data_dir = dir.path();
    opts.log_level = "warn";
    opts.threads = 2;
    opts.clock = [skew = skew_ms] {
      using namespace std::chrono;
      return static_cast<uint64_t>(duration_cast<milliseconds>(
                                     system_clock::now().time_since_epoch())
                                     .count()) +
             skew->load();
    };
    if (tweak)
      tweak(opts);
    start(hooks);
    REQUIRE(srv->app_add("demo").ok());
    alice_token = user("alice");
    bob_token = user("bob");
  }

  void advance(std::chrono::seconds s) {
    *skew_ms += static_cast<uint64_t>(s.count()) * 1000;
  }

  void start(std::shared_ptr<server_hooks> hooks = nullptr) {
    auto s = server::start(opts, std::move(hooks));
    REQUIRE_MESSAGE(s.ok(), s.error().to_string());
    srv = std::move(*s);
    opts.port = srv->port(); // a restart binds the same port
  }

  /// Returns once what sessions have queued at the storage actor so far is
  /// committed: the storage actor applies an admin call only after a
  /// flush of everything before it in its mailbox (here: a refused
  /// app_add). For a device's ack before the device logs in again.
  void settle() {
    auto s = srv->app_add("demo");
    REQUIRE(s.code() == status_code::already_exists);
  }

  std::string user(const std::string& address) {
    auto t = srv->user_add("demo", address);
    REQUIRE_MESSAGE(t.ok(), t.error().to_string());
    return t->token;
  }

  std::unique_ptr<test_client> client() {
    return test_client::connect(srv->port(), srv->cert_file());
  }

  std::unique_ptr<test_client> login(const std::string& token,
                                     const std::string& device,
                                     uint32_t window = 0) {
    auto c = client();
    c->login("demo", token, device, window);
    return c;
  }
};

inline codec::send
text(uint64_t mid, const std::string& peer, const std::string& payload,
     uint16_t flags = codec::message_flags::delivery_receipt |
                      codec::message_flags::read_receipt) {
  codec::send s;
  s.mid = mid;
  s.peer = peer;
  s.flags = flags;
  s.payload = payload;
  return s;
}

inline codec::login_failed
failed_login(fixture& f, const std::string& app, const std::string& token,
             const std::string& device = "d1",
             uint16_t version = codec::protocol_version) {
  auto c = f.client();
  c->send(codec::hello{version, app, token, device, "test", 0});
  auto bad = c->expect<codec::login_failed>();
  CHECK(!bad.text.empty());
  CHECK(c->wait_closed());
  return bad;
}

} // namespace parley::test
