#pragma once

// What every server actor shares: options, the store (for reads), the TLS
// context, the hooks, the logger and the handles of the shared actors.
// Built once by server::start before the first connection is accepted and
// immutable afterwards.

#include "actors/server/dispatcher.hpp"
#include "actors/server/limits.hpp"
#include "actors/server/storage.hpp"
#include "actors/tls/tls.hpp"
#include "store/server_store.hpp"

#include <parley/server.hpp>

#include <spdlog/logger.h>

#include <atomic>
#include <memory>

namespace parley::net {
class poller;
} // namespace parley::net

namespace parley::srv {

/// Milliseconds since the Unix epoch by the system clock.
uint64_t now_ms();

struct context {
  server_options opts;
  std::shared_ptr<store::server_store> store;
  std::shared_ptr<tls::context> tls;
  net::poller* poller = nullptr; ///< Readiness of every connection.
  std::shared_ptr<server_hooks> hooks;
  std::shared_ptr<spdlog::logger> log;
  std::string admin_key;
  storage_actor storage;
  dispatcher_actor dispatcher;
  std::atomic<bool> stopping{false};
  /// Counts edits and retractions, bumped by the storage actor before it
  /// rewrites stored records: a session streams a record_batch only while
  /// this still has the batch's value (else it reads the store).
  std::atomic<uint64_t> rewrites{0};
  /// Failed logins per host (thread-safe; the only mutable shared part).
  std::unique_ptr<login_limiter> logins;

  /// Server time, ms since the Unix epoch: server_options::clock when set
  /// (tests move time with it), else the system clock.
  uint64_t now() const { return opts.clock ? opts.clock() : now_ms(); }
};

using context_ptr = std::shared_ptr<context>;

} // namespace parley::srv
