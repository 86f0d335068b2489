#pragma once

// The acceptor and connection brokers. They run on CAF's multiplexer thread
// and only move bytes: the acceptor forks one connection broker per accepted
// socket; a connection broker spawns its session, forwards what it reads as
// (data, bytes) and writes what the session sends back.

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <memory>

namespace parley::srv {

struct context;

/// Starts the acceptor on an already listening socket `fd`.
caf::actor make_acceptor(caf::actor_system& sys, int fd,
                         std::shared_ptr<context> ctx);

} // namespace parley::srv
