#include "proxy/http/message_parser.h"

#include <algorithm>
#include <cstring>

namespace sluice::http {
namespace {

MessageParser* self(llhttp_t* p) { return static_cast<MessageParser*>(p->data); }

bool isCrlf(char a, char b) { return a == '\r' && b == '\n'; }

}  // namespace

bool listContainsToken(std::string_view value, std::string_view token) {
  std::size_t pos = 0;
  while (pos <= value.size()) {
    std::size_t comma = value.find(',', pos);
    if (comma == std::string_view::npos) comma = value.size();
    std::string_view item = value.substr(pos, comma - pos);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (equalsIgnoreCase(item, token)) return true;
    pos = comma + 1;
  }
  return false;
}

MessageParser::MessageParser(llhttp_type_t type) {
  llhttp_settings_init(&settings_);
  settings_.on_message_begin = &MessageParser::onMessageBegin;
  settings_.on_method = &MessageParser::onMethod;
  settings_.on_url = &MessageParser::onUrl;
  settings_.on_header_field = &MessageParser::onHeaderField;
  settings_.on_header_value = &MessageParser::onHeaderValue;
  settings_.on_header_value_complete = &MessageParser::onHeaderValueComplete;
  settings_.on_headers_complete = &MessageParser::onHeadersComplete;
  settings_.on_body = &MessageParser::onBody;
  settings_.on_message_complete = &MessageParser::onMessageComplete;
  llhttp_init(&parser_, type, &settings_);
  parser_.data = this;
}

void MessageParser::beginMessage(std::uint32_t start) {
  if (head_.upgrade) {
    // After an upgrade message llhttp still has that message's end (and
    // HPE_PAUSED_UPGRADE) pending: the next execute would report it again,
    // 0 bytes consumed, instead of parsing the next message. Start from a
    // clean state (type, settings, user data and lenient flags are kept).
    llhttp_reset(&parser_);
    head_.upgrade = false;
  }
  head_.start = start;
  head_.line_end = 0;
  head_.end = 0;
  head_.header_count = 0;
  head_.host_count = 0;
  head_.host_index = -1;
  head_.url = {};
  head_.method_span = {};
  head_.expect_continue = false;
  in_head_ = true;
  head_done_ = false;
  message_done_ = false;
  skip_body_ = false;
  header_state_ = 0;
  trailer_count_ = 0;
  value_end_feed_ = 0;
  body_bytes_ = 0;
  error_ = ParseError::kNone;
}

void MessageParser::extend(Span& span, const char* at, std::size_t len) {
  auto off = static_cast<std::uint32_t>(at - base_);
  if (span.len == 0) span.off = off;
  span.len += static_cast<std::uint32_t>(len);
}

int MessageParser::onMessageBegin(llhttp_t* p) {
  MessageParser* s = self(p);
  s->in_head_ = true;
  return 0;
}

int MessageParser::onMethod(llhttp_t* p, const char* at, std::size_t len) {
  MessageParser* s = self(p);
  s->extend(s->head_.method_span, at, len);
  return 0;
}

int MessageParser::onUrl(llhttp_t* p, const char* at, std::size_t len) {
  MessageParser* s = self(p);
  s->extend(s->head_.url, at, len);
  return 0;
}

HeaderField* MessageParser::currentField() {
  if (!in_head_) return trailer_count_ > 0 ? &trailer_ : nullptr;
  return head_.header_count > 0 ? &head_.headers[static_cast<std::size_t>(head_.header_count - 1)]
                                : nullptr;
}

int MessageParser::onHeaderField(llhttp_t* p, const char* at, std::size_t len) {
  MessageParser* s = self(p);
  if (s->header_state_ != 1) {
    // Trailers have a limit of their own: a message may carry kMaxHeaders
    // head fields and kMaxHeaders trailer fields.
    int& count = s->in_head_ ? s->head_.header_count : s->trailer_count_;
    if (count >= kMaxHeaders) {
      s->error_ = ParseError::kTooManyHeaders;
      return HPE_USER;
    }
    if (s->in_head_) {
      s->head_.headers[static_cast<std::size_t>(count)] = HeaderField{};
    } else {
      s->trailer_ = HeaderField{};
      s->trailer_name_len_ = 0;
    }
    ++count;
    s->header_state_ = 1;
  }
  if (!s->in_head_) {
    const std::size_t cap = s->trailer_name_.size();
    if (s->trailer_name_len_ < cap) {
      std::memcpy(s->trailer_name_.data() + s->trailer_name_len_, at,
                  std::min(cap - s->trailer_name_len_, len));
    }
    s->trailer_name_len_ += len;
  }
  s->extend(s->currentField()->name, at, len);
  return 0;
}

int MessageParser::onHeaderValue(llhttp_t* p, const char* at, std::size_t len) {
  MessageParser* s = self(p);
  HeaderField* field = s->currentField();
  if (s->header_state_ == 3 || field == nullptr || std::memchr(at, '\n', len) != nullptr ||
      std::memchr(at, '\r', len) != nullptr) {
    // A value after a completed value with no field between: obs-fold
    // (RFC 9112 §5.2), which a proxy must reject or replace; we reject.
    s->error_ = ParseError::kBadRequest;
    return HPE_USER;
  }
  if (s->header_state_ == 2 && field->value.len > 0 &&
      !(at == s->feed_begin_ && s->value_end_feed_ != 0 && s->value_end_feed_ + 1 == s->feeds_)) {
    // A second piece is only the same value split between two reads: the
    // first ended the previous feed and this one starts the next. llhttp
    // delivers an obs-fold continuation line as a second piece too.
    s->error_ = ParseError::kBadRequest;
    return HPE_USER;
  }
  s->header_state_ = 2;
  s->extend(field->value, at, len);
  s->value_end_feed_ = at + len == s->feed_end_ ? s->feeds_ : 0;
  return 0;
}

int MessageParser::onHeaderValueComplete(llhttp_t* p) {
  MessageParser* s = self(p);
  HeaderField* field = s->currentField();
  if (field == nullptr || field->name.len == 0) {
    // llhttp 8.1 takes ": x" as a field with an empty name, even in strict
    // mode; a field name is a token (RFC 9110 §5.1), and we would forward it.
    s->error_ = ParseError::kBadRequest;
    return HPE_USER;
  }
  if (!s->in_head_ && s->trailer_name_len_ <= s->trailer_name_.size()) {
    // RFC 9110 §6.5.1: framing never comes from trailers. A next hop that
    // took it from there would frame the following bytes differently.
    const std::string_view name(s->trailer_name_.data(), s->trailer_name_len_);
    if (equalsIgnoreCase(name, "content-length") || equalsIgnoreCase(name, "transfer-encoding")) {
      s->error_ = ParseError::kBadRequest;
      return HPE_USER;
    }
  }
  if (s->header_state_ == 1) s->header_state_ = 2;  // empty value
  s->header_state_ = 3;
  s->value_end_feed_ = 0;
  return 0;
}

int MessageParser::onHeadersComplete(llhttp_t* p) {
  MessageParser* s = self(p);
  s->head_done_ = true;
  return HPE_PAUSED;
}

int MessageParser::onBody(llhttp_t* p, const char*, std::size_t len) {
  self(p)->body_bytes_ += len;
  return 0;
}

int MessageParser::onMessageComplete(llhttp_t* p) {
  MessageParser* s = self(p);
  s->message_done_ = true;
  return HPE_PAUSED;
}

void MessageParser::noteConsumed(const char* data, std::size_t len) {
  if (len >= 2) {
    tail_ = {data[len - 2], data[len - 1]};
  } else if (len == 1) {
    tail_ = {tail_[1], data[0]};
  }
}

// RFC 9112 §5.2 obs-fold. onHeaderValue catches a continuation of a
// non-empty value; when the first line's value is empty llhttp delivers the
// continuation as the value itself ("Transfer-Encoding:\r\n chunked" is
// chunked to llhttp, empty to a peer that does not fold), or drops a blank
// one. Each field must span exactly one line of the head.
bool MessageParser::hasObsFold() const {
  const MessageHead& h = head_;
  auto lineBreaks = [&](std::uint32_t from, std::uint32_t to) {
    return std::count(base_ + from, base_ + to, '\n');
  };
  for (int i = 0; i < h.header_count; ++i) {
    const HeaderField& f = h.headers[static_cast<std::size_t>(i)];
    const std::uint32_t name_end = f.name.off + f.name.len;
    const std::uint32_t value_from = f.value.len > 0 ? f.value.off : name_end;
    const std::uint32_t value_to = f.value.len > 0 ? f.value.off + f.value.len : name_end;
    const std::uint32_t next =
        i + 1 < h.header_count ? h.headers[static_cast<std::size_t>(i + 1)].name.off : h.end - 2;
    if (lineBreaks(name_end, value_from) != 0 || lineBreaks(value_to, next) != 1) return true;
  }
  return false;
}

ParseResult MessageParser::reject() {
  error_ = ParseError::kBadRequest;
  return ParseResult{ParseEvent::kError, 0};
}

void MessageParser::finishHead() {
  MessageHead& h = head_;
  h.method = parser_.method;
  h.status = parser_.status_code;
  h.version_major = parser_.http_major;
  h.version_minor = parser_.http_minor;
  h.chunked = (parser_.flags & F_CHUNKED) != 0;
  h.transfer_encoding = (parser_.flags & F_TRANSFER_ENCODING) != 0;
  h.has_content_length = (parser_.flags & F_CONTENT_LENGTH) != 0;
  h.content_length = h.has_content_length ? parser_.content_length : 0;
  h.keep_alive = llhttp_should_keep_alive(&parser_) != 0;
  h.upgrade = parser_.upgrade != 0;
  for (int i = 0; i < h.header_count; ++i) {
    HeaderField& f = h.headers[static_cast<std::size_t>(i)];
    f.line_end =
        (i + 1 < h.header_count) ? h.headers[static_cast<std::size_t>(i + 1)].name.off : h.end - 2;
    std::string_view name(base_ + f.name.off, f.name.len);
    if (equalsIgnoreCase(name, "host")) {
      ++h.host_count;
      h.host_index = i;
    } else if (equalsIgnoreCase(name, "expect")) {
      h.expect_continue =
          equalsIgnoreCase(std::string_view(base_ + f.value.off, f.value.len), "100-continue");
    }
  }
  h.line_end = h.header_count > 0 ? h.headers[0].name.off : h.end - 2;
  // llhttp accepts a bare LF after the start line; every line of the head
  // must end in CRLF (RFC 9112 §2.2: a proxy must not forward bare LF).
  h.bare_lf = false;
  auto crlfBefore = [&](std::uint32_t pos) {
    return pos >= 2 && base_[pos - 1] == '\n' && base_[pos - 2] == '\r';
  };
  if (!crlfBefore(h.line_end) || !crlfBefore(h.end)) h.bare_lf = true;
  for (int i = 0; i + 1 < h.header_count; ++i) {
    if (!crlfBefore(h.headers[static_cast<std::size_t>(i + 1)].name.off)) h.bare_lf = true;
  }
  in_head_ = false;
}

ParseResult MessageParser::feed(const char* base, std::uint32_t offset, std::uint32_t len) {
  base_ = base;
  const char* data = base + offset;
  feed_begin_ = data;
  feed_end_ = data + len;
  if (len > 0) ++feeds_;
  llhttp_errno_t err = llhttp_execute(&parser_, data, len);
  ParseResult r;
  if (err == HPE_OK) {
    r.consumed = len;
    noteConsumed(data, len);
    r.event = ParseEvent::kNeedMore;
    return r;
  }
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    r.consumed = static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - data);
    noteConsumed(data, r.consumed);
    if (err == HPE_PAUSED_UPGRADE) {
      // We never switch protocols (Upgrade is hop-by-hop and dropped): the
      // message simply ended.
      llhttp_resume_after_upgrade(&parser_);
      message_done_ = true;
    } else {
      llhttp_resume(&parser_);
    }
    if (head_done_) {
      head_done_ = false;
      head_.end = offset + static_cast<std::uint32_t>(r.consumed);
      finishHead();
      // Reject here, not only in ClientConn::handleHead: a response head with
      // a bare LF would otherwise be relayed (its status line cut one byte
      // short when the LF ends the head).
      if (head_.bare_lf || hasObsFold()) return reject();
      // llhttp never reads content of a CONNECT request (a tunnel follows),
      // yet the proxy forwards its Content-Length or Transfer-Encoding: the
      // next hop would take the next request's bytes for that content
      // (smuggling). A CONNECT request has no content (RFC 9110 §9.3.6).
      if (parser_.type == HTTP_REQUEST && head_.method == HTTP_CONNECT &&
          (head_.content_length > 0 || head_.transfer_encoding)) {
        return reject();
      }
      r.event = ParseEvent::kHeadComplete;
      // A message completing in the same pause (upgrade) is reported on the
      // next feed.
      if (message_done_) message_done_ = false;
      return r;
    }
    if (message_done_) {
      message_done_ = false;
      // llhttp also takes a bare LF as the empty line ending a chunked body
      // ("0\r\n\n", or after trailers). Bodies are forwarded raw, so the next
      // hop could frame the bytes after it differently (smuggling).
      if (!in_head_ && head_.chunked && !isCrlf(tail_[0], tail_[1])) return reject();
      r.event = ParseEvent::kMessageComplete;
      return r;
    }
    r.event = ParseEvent::kNeedMore;
    return r;
  }
  if (error_ == ParseError::kNone) error_ = ParseError::kBadRequest;
  r.consumed = 0;
  r.event = ParseEvent::kError;
  return r;
}

void MessageParser::skipBody() { parser_.flags |= F_SKIPBODY; }

bool MessageParser::finishAtEof() {
  llhttp_errno_t err = llhttp_finish(&parser_);
  return (err == HPE_OK || err == HPE_PAUSED) && !in_head_;
}

}  // namespace sluice::http
