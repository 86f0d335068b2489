#pragma once

// A connected pair of tls::streams in memory (server and client, TLS 1.3
// handshake done), for the TLS tests and bench/tls_bench: what sessions
// and clients run over memory BIOs, without a socket.

#include "actors/tls/tls.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

namespace parley::test {

struct tls_pair {
  std::string dir;
  std::unique_ptr<tls::stream> server, client;
  std::string error; ///< What failed in the setup; empty when ready.

  tls_pair() { error = setup(); }

  ~tls_pair() {
    std::error_code ec;
    if (!dir.empty())
      std::filesystem::remove_all(dir, ec);
  }

  tls_pair(const tls_pair&) = delete;
  tls_pair& operator=(const tls_pair&) = delete;

 private:
  /// Makes a certificate, the contexts and the streams, and runs the
  /// handshake; returns what failed, or nothing.
  std::string setup() {
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
    auto sctx = tls::context::server(dir + "/cert.pem", dir + "/key.pem");
    if (!sctx)
      return sctx.error().to_string();
    tls::client_options co;
    co.ca_file = dir + "/cert.pem";
    auto cctx = tls::context::client(co);
    if (!cctx)
      return cctx.error().to_string();
    server = std::make_unique<tls::stream>(*sctx);
    client = std::make_unique<tls::stream>(*cctx, "localhost");
    tls::bytes to_server, to_client, plain;
    if (auto s = client->start(to_server); !s)
      return s.to_string();
    for (int round = 0;
         round < 10 && !(server->established() && client->established());
         ++round) {
      if (auto s = server->receive(to_server.data(), to_server.size(), plain,
                                   to_client);
          !s)
        return s.to_string();
      to_server.clear();
      if (auto s = client->receive(to_client.data(), to_client.size(), plain,
                                   to_server);
          !s)
        return s.to_string();
      to_client.clear();
    }
    if (!server->established() || !client->established())
      return "the handshake did not finish";
    if (!to_server.empty()) // the client's Finished
      if (auto s = server->receive(to_server.data(), to_server.size(), plain,
                                   to_client);
          !s)
        return s.to_string();
    return {};
  }
};

} // namespace parley::test
