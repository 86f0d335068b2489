#pragma once

// Interop for hosts that bring their own CAF actor system: the one public
// header that names CAF types. Parley's actors (a server's, or a client
// runtime's) then run on the host's scheduler and multiplexer instead of a
// system of their own.
//
//   caf::actor_system_config cfg;
//   parley::interop::prepare(cfg);            // before the system exists
//   caf::actor_system sys{cfg};
//   auto srv = parley::interop::start_server(sys, opts);
//
// REQUIRES: the system outlives every Parley object started on it; stop the
// server (server::stop(), then wait()) before the system goes away.

#include <parley/client.hpp>
#include <parley/server.hpp>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>

namespace parley::interop {

/// Loads the middleman (Parley's connections are CAF brokers). Parley's
/// message types are inspectable and local, so nothing else needs
/// registering in CAF 0.17.
inline void prepare(caf::actor_system_config& cfg) {
  cfg.load<caf::io::middleman>();
}

/// Starts a server whose actors run on `sys`. Fails with failed_precondition
/// when `sys` has no middleman.
inline result<std::unique_ptr<server>>
start_server(caf::actor_system& sys, const server_options& opts,
             std::shared_ptr<server_hooks> hooks = nullptr) {
  return interop_start(sys, opts, std::move(hooks));
}

/// A client runtime whose clients' actors run on `sys` (their callbacks
/// still run on the runtime's own small callback pool, never on an actor
/// thread). Fails with failed_precondition when `sys` has no middleman.
inline result<std::shared_ptr<runtime>>
make_runtime(caf::actor_system& sys, const runtime_options& opts = {}) {
  return interop_runtime(sys, opts);
}

} // namespace parley::interop
