#include "actors/server/connection.hpp"

#include "actors/server/context.hpp"
#include "actors/server/session.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <spdlog/spdlog.h>

#include <unordered_set>

namespace parley::srv {

namespace {

/// Read chunk per socket read. Small keeps idle connections cheap (a scribe
/// holds a read buffer of this size); 16 KiB is one full TLS record.
constexpr size_t read_chunk = 16384;

/// Bytes forwarded to the session and not yet processed before the broker
/// stops reading from the socket.
constexpr uint64_t max_unconsumed = 256 * 1024;

caf::behavior connection(caf::io::broker* self, caf::io::connection_handle hdl,
                         std::shared_ptr<context> ctx) {
  auto peer =
    self->remote_addr(hdl) + ":" + std::to_string(self->remote_port(hdl));
  self->configure_read(hdl, caf::io::receive_policy::at_most(read_chunk));
  self->ack_writes(hdl, true);
  auto session = make_session_actor(
    self->system(), caf::actor_cast<caf::actor>(self), ctx, peer);
  self->monitor(session);
  // Read credit: the session gives back what it processed; past the limit
  // the broker stops reading, so a client that floods waits in TCP.
  auto unconsumed = std::make_shared<uint64_t>(0);
  auto halted = std::make_shared<bool>(false);
  self->set_down_handler([=](caf::down_msg& dm) {
    if (dm.source == session) {
      self->close(hdl);
      self->quit();
    }
  });
  return {
    [=](const caf::io::new_data_msg& msg) {
      self->send(session, data_atom::value,
                 bytes(reinterpret_cast<const uint8_t*>(msg.buf.data()),
                       reinterpret_cast<const uint8_t*>(msg.buf.data()) +
                         msg.buf.size()));
      *unconsumed += msg.buf.size();
      if (*unconsumed > max_unconsumed && !*halted) {
        self->halt(hdl);
        *halted = true;
      }
    },
    [=](consumed_atom, uint64_t n) {
      *unconsumed = n > *unconsumed ? 0 : *unconsumed - n;
      if (*halted && *unconsumed <= max_unconsumed / 4) {
        self->trigger(hdl);
        *halted = false;
      }
    },
    [=](const caf::io::data_transferred_msg& msg) {
      self->send(session, written_atom::value,
                 static_cast<uint64_t>(msg.written));
    },
    [=](data_atom, const bytes& out) {
      self->write(hdl, out.size(), out.data());
      self->flush(hdl);
    },
    [=](close_atom) {
      // close() still sends what is buffered, then FIN.
      self->close(hdl);
      self->quit();
    },
    [=](shutdown_atom) { self->send(session, shutdown_atom::value); },
    [=](const caf::io::connection_closed_msg&) {
      self->send(session, closed_atom::value);
      self->quit();
    },
  };
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
