// parley::admin_client: blocking admin frames over TLS.

#include <parley/admin.hpp>

#include "actors/tls/tls_socket.hpp"
#include "api/users_add.hpp"
#include "codec/codec.hpp"

namespace parley {

struct admin_client::impl {
  std::unique_ptr<tls::tls_socket> sock;
  std::chrono::milliseconds timeout{10000};
  uint64_t next_req = 1;

  /// Sends an admin frame and waits for its answer (reply, admin_token or
  /// admin_tokens).
  template<class Frame>
  result<codec::frame> call(Frame f) {
    f.req = next_req++;
    if (auto st = sock->send(f); !st)
      return st;
    for (;;) {
      auto r = sock->receive(timeout);
      if (!r)
        return r.error().annotate(std::string{"admin "} +
                                  std::string{codec::to_string(Frame::type)});
      if (auto* rep = std::get_if<codec::reply>(&*r)) {
        if (rep->req != f.req)
          continue;
        if (rep->code != status_code::ok)
          return status{rep->code, rep->text};
        return std::move(*r);
      }
      if (auto* tok = std::get_if<codec::admin_token>(&*r);
          tok && tok->req == f.req)
        return std::move(*r);
      if (auto* toks = std::get_if<codec::admin_tokens>(&*r);
          toks && toks->req == f.req)
        return std::move(*r);
      if (auto* bye = std::get_if<codec::goodbye>(&*r))
        return status{status_code::unavailable,
                      "the server ended the admin session: " + bye->text};
      // pings and anything else: skip
    }
  }

  template<class Frame>
  status simple(Frame f) {
    auto r = call(std::move(f));
    return r ? status{} : r.error();
  }

  template<class Frame>
  result<access_token> token(Frame f) {
    auto r = call(std::move(f));
    if (!r)
      return r.error();
    auto* t = std::get_if<codec::admin_token>(&*r);
    if (t == nullptr)
      return status{status_code::internal, "the server answered no token"};
    return access_token{t->app_id, t->address, t->token, t->expires_at_ms};
  }
};

admin_client::admin_client(std::unique_ptr<impl> p) : impl_(std::move(p)) {
  // nop
}

admin_client::~admin_client() = default;

result<std::unique_ptr<admin_client>>
admin_client::connect(const admin_options& opts) {
  if (opts.admin_key.empty())
    return status{status_code::invalid_argument,
                  "no admin key: pass it (it is in parleyd's data directory, "
                  "admin.key) or set PARLEY_ADMIN_KEY"};
  tls::client_options to;
  to.ca_file = opts.ca_file;
  to.pinned_fingerprint = opts.fingerprint;
  auto ctx = tls::context::client(to);
  if (!ctx)
    return ctx.error();
  auto sock =
    tls::tls_socket::connect(opts.host, opts.port, *ctx, opts.timeout);
  if (!sock)
    return sock.error();
  auto p = std::make_unique<impl>();
  p->sock = std::move(*sock);
  p->timeout = opts.timeout;
  if (auto st = p->sock->send(
        codec::admin_hello{codec::protocol_version, opts.admin_key});
      !st)
    return st;
  auto r = p->sock->receive(opts.timeout);
  if (!r)
    return r.error().annotate("admin login");
  if (auto* bad = std::get_if<codec::login_failed>(&*r))
    return status{status_code::unauthenticated, bad->text};
  if (!std::holds_alternative<codec::login_ok>(*r))
    return status{status_code::protocol_error,
                  "the server did not answer the admin login"};
  return std::unique_ptr<admin_client>(new admin_client(std::move(p)));
}

status admin_client::app_add(const std::string& app_id,
                             const std::string& name) {
  return impl_->simple(codec::admin_app_add{0, app_id, name});
}

status admin_client::app_delete(const std::string& app_id) {
  return impl_->simple(codec::admin_app_delete{0, app_id});
}

result<access_token> admin_client::user_add(const std::string& app_id,
                                            const std::string& address,
                                            const std::string& name,
                                            uint32_t ttl) {
  return impl_->token(codec::admin_user_add{0, app_id, address, name, ttl});
}

result<std::vector<access_token>>
admin_client::users_add(const std::string& app_id,
                        const std::vector<std::string>& addresses,
                        uint32_t ttl) {
  return detail::users_add(
    app_id, addresses, ttl,
    [this](codec::admin_users_add f) { return impl_->call(std::move(f)); });
}

result<access_token> admin_client::token_add(const std::string& app_id,
                                             const std::string& address,
                                             uint32_t ttl) {
  return impl_->token(codec::admin_token_add{0, app_id, address, ttl});
}

status admin_client::token_revoke(const std::string& app_id,
                                  const std::string& address,
                                  const std::string& token) {
  return impl_->simple(codec::admin_token_revoke{0, app_id, address, token});
}

status admin_client::user_disable(const std::string& app_id,
                                  const std::string& address, bool disabled) {
  return impl_->simple(codec::admin_user_disable{0, app_id, address, disabled});
}

status admin_client::user_delete(const std::string& app_id,
                                 const std::string& address) {
  return impl_->simple(codec::admin_user_delete{0, app_id, address});
}

result<std::string> admin_client::list(admin_list_what what,
                                       const std::string& app_id,
                                       const std::string& after,
                                       uint32_t limit) {
  auto kind = what == admin_list_what::apps ? codec::admin_list_kind::apps
                                            : codec::admin_list_kind::users;
  auto r = impl_->call(codec::admin_list{0, kind, app_id, after, limit});
  if (!r)
    return r.error();
  auto* rep = std::get_if<codec::reply>(&*r);
  if (rep == nullptr)
    return status{status_code::internal, "the server answered no list"};
  return rep->body;
}

} // namespace parley
