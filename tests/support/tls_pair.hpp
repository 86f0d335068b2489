#pragma once

// A connected pair of tls::streams in memory (server and client, TLS 1.3
// handshake done), for the TLS tests and bench/tls_bench: what sessions
// and clients run over memory BIOs, without a socket.

#include "actors/tls/tls.hpp"

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

namespace parley::test {

/// Nanoseconds each side spent in its tls::stream calls during a handshake.
struct handshake_times {
  int64_t client_ns = 0;
  int64_t server_ns = 0;
};

struct tls_pair {
  std::string dir;
  std::shared_ptr<tls::context> server_ctx, client_ctx;
  std::unique_ptr<tls::stream> server, client;
  std::string error; ///< What failed in the setup; empty when ready.

  /// `client_opts` adjusts the client context (its ca_file is set to the
  /// generated certificate unless a fingerprint is pinned).
  explicit tls_pair(tls::client_options client_opts = {}) {
    error = setup(std::move(client_opts));
    if (error.empty())
      error = connect();
  }

  ~tls_pair() {
    std::error_code ec;
    if (!dir.empty())
      std::filesystem::remove_all(dir, ec);
  }

  tls_pair(const tls_pair&) = delete;
  tls_pair& operator=(const tls_pair&) = delete;

  /// A new server context on the same certificate, as a restarted server
  /// makes (its tickets sealed with `keys`, or none when null): returns what
  /// failed, or nothing. connect() uses it from then on.
  std::string new_server_context(std::shared_ptr<tls::ticket_keys> keys) {
    auto sctx = tls::context::server(dir + "/cert.pem", dir + "/key.pem",
                                     tls::min_version::tls1_3, std::move(keys));
    if (!sctx)
      return sctx.error().to_string();
    server_ctx = *sctx;
    return {};
  }

  /// New streams on the same contexts and a full handshake between them;
  /// returns what failed, or nothing. `times`, when given, gets each
  /// side's share.
  /// `offer` is a ticket for the client to resume (stream::resume).
  std::string connect(handshake_times* times = nullptr,
                      std::shared_ptr<const tls::ticket> offer = nullptr) {
    using clock = std::chrono::steady_clock;
    auto timed = [&](int64_t* ns, auto&& f) {
      auto t0 = clock::now();
      auto s = f();
      if (times != nullptr)
        *ns += std::chrono::duration_cast<std::chrono::nanoseconds>(
                 clock::now() - t0)
                 .count();
      return s;
    };
    int64_t scratch = 0;
    int64_t* cns = times != nullptr ? &times->client_ns : &scratch;
    int64_t* sns = times != nullptr ? &times->server_ns : &scratch;
    timed(sns, [&] {
      server = std::make_unique<tls::stream>(server_ctx);
      return status{};
    });
    tls::bytes to_server, to_client, plain;
    if (auto s = timed(cns,
                       [&] {
                         client = std::make_unique<tls::stream>(client_ctx,
                                                                "localhost");
                         client->resume(offer);
                         return client->start(to_server);
                       });
        !s)
      return s.to_string();
    // `to` reads what `in` holds (timed on its side) and answers into `out`.
    auto deliver = [&](tls::stream& to, tls::bytes& in, tls::bytes& out,
                       int64_t* ns) {
      auto s =
        timed(ns, [&] { return to.receive(in.data(), in.size(), plain, out); });
      in.clear();
      return s;
    };
    for (int round = 0;
         round < 10 && !(server->established() && client->established());
         ++round) {
      if (auto s = deliver(*server, to_server, to_client, sns); !s)
        return s.to_string();
      if (auto s = deliver(*client, to_client, to_server, cns); !s)
        return s.to_string();
    }
    if (!server->established() || !client->established())
      return "the handshake did not finish";
    if (!to_server.empty()) // the client's Finished
      if (auto s = deliver(*server, to_server, to_client, sns); !s)
        return s.to_string();
    if (!to_client.empty()) // the server's session ticket
      if (auto s = deliver(*client, to_client, to_server, cns); !s)
        return s.to_string();
    return {};
  }

 private:
  /// Makes a certificate and the two contexts; returns what failed, or
  /// nothing.
  std::string setup(tls::client_options co) {
    char tmpl[] = "/tmp/parley-tls-pair-XXXXXX";
    if (char* p = mkdtemp(tmpl); p != nullptr)
      dir = p;
    else
      return "mkdtemp failed";
    auto id = tls::generate_self_signed("localhost");
    if (!id)
      return id.error().to_string();
    std::ofstream{dir + "/cert.pem"} << id->cert_pem;
    std::ofstream{dir + "/key.pem"} << id->key_pem;
    // Tickets sealed with keys in memory, as parleyd's (which keeps them in
    // its data directory).
    auto keys = tls::ticket_keys::open({}, {}, std::time(nullptr));
    if (!keys)
      return keys.error().to_string();
    if (auto e = new_server_context(*keys); !e.empty())
      return e;
    if (co.pinned_fingerprint == "generated") {
      auto fp = tls::fingerprint_of_pem(id->cert_pem);
      if (!fp)
        return fp.error().to_string();
      co.pinned_fingerprint = *fp;
    } else if (co.pinned_fingerprint.empty()) {
      co.ca_file = dir + "/cert.pem";
    }
    auto cctx = tls::context::client(co);
    if (!cctx)
      return cctx.error().to_string();
    client_ctx = *cctx;
    return {};
  }
};

} // namespace parley::test
