#pragma once

// The acceptor: an actor that accepts connections on the listening socket
// when the poller says it is readable, and spawns one session per socket
// (the session owns it from then on). It remembers its sessions so that a
// shutdown reaches all of them, also those still in the handshake.

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <memory>

namespace parley::srv {

struct context;

/// Starts the acceptor on an already listening socket `fd`.
caf::actor make_acceptor(caf::actor_system& sys, int fd,
                         std::shared_ptr<context> ctx);

} // namespace parley::srv
