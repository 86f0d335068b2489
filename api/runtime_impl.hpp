#pragma once

// Internal: what a parley::runtime holds. For the SDK's own code and tests
// (parley-sim reads its actor system); not installed.

#include <parley/client.hpp>

#include "actors/client/callback_pool.hpp"
#include "actors/client/connector.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <memory>

namespace parley {

struct runtime::impl {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> owned; ///< Ours, or null when hosted.
  caf::actor_system* sys = nullptr;         ///< The system in use.
  std::unique_ptr<net::callback_pool> callbacks;
  std::unique_ptr<net::connector> connector;
};

} // namespace parley
