#include "actors/server/connection.hpp"

#include "actors/server/context.hpp"
#include "actors/server/session.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <spdlog/spdlog.h>

namespace parley::srv {

namespace {

/// Read chunk per socket read. Small keeps idle connections cheap (a scribe
/// holds a read buffer of this size); 16 KiB is one full TLS record.
constexpr size_t read_chunk = 16384;

caf::behavior connection(caf::io::broker* self, caf::io::connection_handle hdl,
                         std::shared_ptr<context> ctx) {
  auto peer =
    self->remote_addr(hdl) + ":" + std::to_string(self->remote_port(hdl));
  self->configure_read(hdl, caf::io::receive_policy::at_most(read_chunk));
  self->ack_writes(hdl, true);
  auto session = make_session_actor(
    self->system(), caf::actor_cast<caf::actor>(self), ctx, peer);
  self->monitor(session);
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
    [=](const caf::io::connection_closed_msg&) {
      self->send(session, closed_atom::value);
      self->quit();
    },
  };
}

caf::behavior acceptor(caf::io::broker* self, int fd,
                       std::shared_ptr<context> ctx) {
  self->add_doorman(fd);
  return {
    [=](const caf::io::new_connection_msg& msg) {
      if (ctx->stopping) {
        self->close(msg.handle);
        return;
      }
      self->fork(connection, msg.handle, ctx);
    },
    [=](shutdown_atom) {
      self->close_all();
      self->quit();
    },
    [=](const caf::io::acceptor_closed_msg&) {
      ctx->log->warn("the listening socket closed");
      self->quit();
    },
  };
}

} // namespace

caf::actor make_acceptor(caf::actor_system& sys, int fd,
                         std::shared_ptr<context> ctx) {
  return sys.middleman().spawn_broker(acceptor, fd, std::move(ctx));
}

} // namespace parley::srv
