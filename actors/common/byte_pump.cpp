#include "actors/common/byte_pump.hpp"

#include "actors/server/messages.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <memory>

namespace parley::net {

using srv::bytes;
using srv::close_atom;
using srv::closed_atom;
using srv::consumed_atom;
using srv::data_atom;
using srv::shutdown_atom;
using srv::written_atom;

namespace {

/// Read chunk per socket read. Small keeps idle connections cheap (a scribe
/// holds a read buffer of this size); 16 KiB is one full TLS record.
constexpr size_t read_chunk = 16384;

} // namespace

caf::behavior byte_pump(caf::io::broker* self, caf::io::connection_handle hdl,
                        caf::actor owner) {
  self->configure_read(hdl, caf::io::receive_policy::at_most(read_chunk));
  self->ack_writes(hdl, true);
  self->monitor(owner);
  self->set_down_handler([=](caf::down_msg& dm) {
    if (dm.source == owner) {
      self->close(hdl);
      self->quit();
    }
  });
  auto unconsumed = std::make_shared<uint64_t>(0);
  auto halted = std::make_shared<bool>(false);
  return {
    [=](const caf::io::new_data_msg& msg) {
      auto* p = reinterpret_cast<const uint8_t*>(msg.buf.data());
      self->send(owner, data_atom::value, bytes(p, p + msg.buf.size()));
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
      self->send(owner, written_atom::value,
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
    [=](shutdown_atom) { self->send(owner, shutdown_atom::value); },
    [=](const caf::io::connection_closed_msg&) {
      self->send(owner, closed_atom::value);
      self->quit();
    },
  };
}

caf::actor spawn_pump(caf::actor_system& sys, int fd, caf::actor owner) {
  auto fn = [](caf::io::broker* self, int sock,
               caf::actor who) -> caf::behavior {
    auto hdl = self->add_scribe(sock);
    return byte_pump(self, hdl, std::move(who));
  };
  return sys.middleman().spawn_broker(fn, fd, std::move(owner));
}

} // namespace parley::net
