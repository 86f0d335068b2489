#pragma once

// Internal: what a parley::runtime holds. For the SDK's own code and tests
// (parley-sim reads its actor system); not installed.

#include <parley/client.hpp>

#include "actors/client/callback_pool.hpp"
#include "actors/client/connector.hpp"
#include "actors/common/poller.hpp"
#include "actors/tls/tls.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace parley {

struct runtime::impl {
  /// Socket readiness for every client: on our own actor system its
  /// scheduler's (actors/common/io_scheduler.hpp: the workers poll), on a
  /// host's a poller with its own thread. First member, so destroyed last,
  /// after every channel on it.
  std::shared_ptr<net::poller> poller;
  net::poller* io = nullptr; ///< poller.get()
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> owned; ///< Ours, or null when hosted.
  caf::actor_system* sys = nullptr;         ///< The system in use.
  std::unique_ptr<net::callback_pool> callbacks;
  std::unique_ptr<net::connector> connector;

  /// TLS client contexts by trust settings: clients that trust the same
  /// certificate share one (an SSL_CTX and its parsed CA: 10,000 simulated
  /// users load the CA file once, not 10,000 times).
  std::mutex tls_mtx;
  std::map<std::string, std::weak_ptr<tls::context>> tls_contexts;

  /// The shared context for `opts`, made on first use.
  result<std::shared_ptr<tls::context>>
  tls_context(const tls::client_options& opts) {
    auto key = opts.ca_file + '\n' + opts.pinned_fingerprint;
    std::lock_guard<std::mutex> guard{tls_mtx};
    if (auto ctx = tls_contexts[key].lock())
      return ctx;
    auto made = tls::context::client(opts);
    if (made)
      tls_contexts[key] = *made;
    return made;
  }
};

} // namespace parley
