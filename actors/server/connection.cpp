#include "actors/server/connection.hpp"
#include "actors/common/tsan.hpp"

#include "actors/common/poller.hpp"
#include "actors/server/context.hpp"
#include "actors/server/messages.hpp"
#include "actors/server/session.hpp"

#include <caf/all.hpp>

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_set>

namespace parley::srv {

namespace {

struct acceptor_state {
  std::shared_ptr<context> ctx;
  int fd = -1;
  uint64_t token = 0;
  bool registered = false;
  std::unordered_set<caf::actor> sessions;
  std::vector<done_slot> waiters;
  static inline const char* name = "parley.acceptor";

  ~acceptor_state() { stop_listening(); }

  void stop_listening() {
    if (registered) {
      ctx->poller->remove(token);
      registered = false;
    }
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
  }
};

using acceptor_ptr =
  caf::stateful_actor<acceptor_state, net::hb_actor<caf::event_based_actor>>*;

void done_if_empty(acceptor_ptr self) {
  auto& st = self->state;
  if (!st.sessions.empty() || st.waiters.empty())
    return;
  for (auto& w : st.waiters)
    w->set_value();
  st.waiters.clear();
  self->quit();
}

/// Accepts every waiting connection (the listening socket is non-blocking).
void accept_all(acceptor_ptr self) {
  auto& st = self->state;
  while (st.fd >= 0) {
    int fd = ::accept4(st.fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        st.ctx->log->warn("accept: {}", std::strerror(errno));
      return;
    }
    if (st.ctx->stopping) {
      ::close(fd);
      continue;
    }
    auto s = make_session_actor(self->system(), fd, st.ctx);
    self->monitor(s);
    st.sessions.insert(s);
  }
}

} // namespace

caf::actor make_acceptor(caf::actor_system& sys, int fd,
                         std::shared_ptr<context> ctx) {
  auto fn = [](acceptor_ptr self, int sock,
               std::shared_ptr<context> c) -> caf::behavior {
    auto& st = self->state;
    st.ctx = std::move(c);
    st.fd = sock;
    int flags = ::fcntl(sock, F_GETFL, 0);
    ::fcntl(sock, F_SETFL, flags | O_NONBLOCK);
    auto me = caf::actor_cast<caf::weak_actor_ptr>(self->ctrl());
    auto token = st.ctx->poller->add(sock, [me](uint32_t) {
      if (auto a = caf::actor_cast<caf::actor>(me))
        caf::anon_send(a, io_atom::value);
    });
    if (token) {
      st.token = *token;
      st.registered = true;
    } else {
      st.ctx->log->error("the listening socket: {}", token.error().to_string());
    }
    self->set_down_handler([=](caf::down_msg& dm) {
      self->state.sessions.erase(caf::actor_cast<caf::actor>(dm.source));
      done_if_empty(self);
    });
    return {
      [=](io_atom) { accept_all(self); },
      [=](shutdown_atom, done_slot& done) {
        // Stop accepting, tell every session, answer when all are gone (or
        // after a grace period for peers that never drain).
        auto& st = self->state;
        st.stop_listening();
        for (auto& s : st.sessions)
          self->send(s, shutdown_atom::value);
        st.waiters.push_back(std::move(done));
        if (st.sessions.empty()) {
          done_if_empty(self);
          return;
        }
        self->delayed_send(self, std::chrono::seconds(5), tick_atom::value);
      },
      [=](tick_atom) {
        self->state.sessions.clear();
        done_if_empty(self);
      },
    };
  };
  return sys.spawn(fn, fd, std::move(ctx));
}

} // namespace parley::srv
