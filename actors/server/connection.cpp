#include "actors/server/connection.hpp"

#include "actors/common/byte_pump.hpp"
#include "actors/server/context.hpp"
#include "actors/server/session.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <spdlog/spdlog.h>

#include <unordered_set>

namespace parley::srv {

namespace {

caf::behavior connection(caf::io::broker* self, caf::io::connection_handle hdl,
                         std::shared_ptr<context> ctx) {
  auto peer =
    self->remote_addr(hdl) + ":" + std::to_string(self->remote_port(hdl));
  auto session = make_session_actor(
    self->system(), caf::actor_cast<caf::actor>(self), ctx, peer);
  return net::byte_pump(self, hdl, session);
}

caf::behavior acceptor(caf::io::broker* self, int fd,
                       std::shared_ptr<context> ctx) {
  self->add_doorman(fd);
  // Every connection broker, so that a shutdown reaches all sessions: also
  // those still in the handshake and admin sessions.
  auto conns = std::make_shared<std::unordered_set<caf::actor>>();
  auto waiters = std::make_shared<std::vector<caf::response_promise>>();
  auto done_if_empty = [=] {
    if (!conns->empty() || waiters->empty())
      return;
    for (auto& rp : *waiters)
      rp.deliver(true);
    waiters->clear();
    self->quit();
  };
  self->set_down_handler([=](caf::down_msg& dm) {
    conns->erase(caf::actor_cast<caf::actor>(dm.source));
    done_if_empty();
  });
  return {
    [=](const caf::io::new_connection_msg& msg) {
      if (ctx->stopping) {
        self->close(msg.handle);
        return;
      }
      auto conn = self->fork(connection, msg.handle, ctx);
      self->monitor(conn);
      conns->insert(conn);
    },
    [=](shutdown_atom) -> caf::result<bool> {
      // Stop accepting, tell every connection, answer when all are gone
      // (or after a grace period for peers that never drain).
      self->close_all();
      for (auto& c : *conns)
        self->send(c, shutdown_atom::value);
      waiters->push_back(self->make_response_promise());
      auto rp = waiters->back();
      if (conns->empty()) {
        done_if_empty();
        return rp;
      }
      self->delayed_send(self, std::chrono::seconds(5), tick_atom::value);
      return rp;
    },
    [=](tick_atom) {
      conns->clear();
      done_if_empty();
    },
    [=](const caf::io::acceptor_closed_msg&) {
      if (!ctx->stopping)
        ctx->log->warn("the listening socket closed");
    },
  };
}

} // namespace

caf::actor make_acceptor(caf::actor_system& sys, int fd,
                         std::shared_ptr<context> ctx) {
  return sys.middleman().spawn_broker(acceptor, fd, std::move(ctx));
}

} // namespace parley::srv
