#pragma once
// llhttp glue for one direction of an HTTP/1.1 connection. The caller keeps
// the bytes of a message head contiguous in its own buffer; the parser only
// records offsets into it (no copies, no allocation per message).
//
// Usage: feed() bytes in order. It stops (pauses) at the end of a head and at
// the end of a message so the caller learns exact byte offsets and can
// forward bodies raw, chunked framing included.

#include <llhttp.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sluice::http {

struct Span {
  std::uint32_t off = 0;
  std::uint32_t len = 0;
};

struct HeaderField {
  Span name;
  Span value;
  std::uint32_t line_end = 0;  // offset just past this line's CRLF (filled at head end)
};

inline constexpr int kMaxHeaders = 100;

// What feed() stopped at.
enum class ParseEvent {
  kNeedMore,         // all bytes consumed, message not at a boundary
  kHeadComplete,     // head ends at `consumed`; inspect head()
  kMessageComplete,  // message (incl. body) ends at `consumed`
  kError,            // framing or syntax error; see error()
};

enum class ParseError {
  kNone,
  kBadRequest,      // malformed / smuggling-shaped framing (400)
  kTooManyHeaders,  // more than kMaxHeaders fields (431)
};

struct ParseResult {
  ParseEvent event = ParseEvent::kNeedMore;
  std::size_t consumed = 0;  // bytes of the fed slice consumed
};

// Parsed message head. Offsets are relative to the buffer base the caller
// passes to feed().
struct MessageHead {
  std::uint8_t method = 0;  // llhttp_method_t (requests)
  int status = 0;           // responses
  std::uint8_t version_major = 1;
  std::uint8_t version_minor = 1;
  Span method_span;
  Span url;
  std::uint32_t start = 0;     // first byte of the head
  std::uint32_t line_end = 0;  // just past the start line's CRLF
  std::uint32_t end = 0;       // just past the blank line
  std::array<HeaderField, kMaxHeaders> headers{};
  int header_count = 0;
  bool chunked = false;
  bool transfer_encoding = false;  // any Transfer-Encoding field (RFC 9112 §6.1)
  bool bare_lf = false;            // a line of the head ended in LF without CR
  bool has_content_length = false;
  std::uint64_t content_length = 0;
  bool keep_alive = true;  // per llhttp_should_keep_alive
  bool upgrade = false;
  int host_count = 0;
  int host_index = -1;
  bool expect_continue = false;
};

class MessageParser {
 public:
  explicit MessageParser(llhttp_type_t type);
  MessageParser(const MessageParser&) = delete;
  MessageParser& operator=(const MessageParser&) = delete;

  // Starts a new message whose head begins at `base + start`.
  void beginMessage(std::uint32_t start);

  // Parses `len` bytes at `base + offset`. `base` must stay the same (and
  // hold the head bytes) from beginMessage() until kHeadComplete.
  ParseResult feed(const char* base, std::uint32_t offset, std::uint32_t len);

  // Tells a response parser that the message has no body (HEAD request,
  // 1xx/204/304; RFC 9112 §6.3). Call right after kHeadComplete.
  void skipBody();

  // Signals EOF; true if the message completed by EOF (close-delimited body).
  bool finishAtEof();

  const MessageHead& head() const { return head_; }
  ParseError error() const { return error_; }
  const char* errorReason() const { return llhttp_get_error_reason(&parser_); }
  // Body bytes seen so far in the current message (decoded length).
  std::uint64_t bodyBytes() const { return body_bytes_; }
  // True when the body runs until the connection closes.
  bool bodyUntilEof() const { return llhttp_message_needs_eof(&parser_) != 0; }
  bool inHead() const { return in_head_; }

 private:
  static int onMessageBegin(llhttp_t* p);
  static int onMethod(llhttp_t* p, const char* at, std::size_t len);
  static int onUrl(llhttp_t* p, const char* at, std::size_t len);
  static int onHeaderField(llhttp_t* p, const char* at, std::size_t len);
  static int onHeaderValue(llhttp_t* p, const char* at, std::size_t len);
  static int onHeaderValueComplete(llhttp_t* p);
  static int onHeadersComplete(llhttp_t* p);
  static int onBody(llhttp_t* p, const char* at, std::size_t len);
  static int onMessageComplete(llhttp_t* p);

  void extend(Span& span, const char* at, std::size_t len);
  // The field the header callbacks are filling: a head field, or the one
  // trailer field being parsed (trailers are checked, counted and forwarded
  // raw, never kept).
  HeaderField* currentField();
  void finishHead();
  void noteConsumed(const char* data, std::size_t len);
  bool hasObsFold() const;
  ParseResult reject();

  llhttp_t parser_{};
  llhttp_settings_t settings_{};
  const char* base_ = nullptr;
  MessageHead head_;
  ParseError error_ = ParseError::kNone;
  std::uint64_t body_bytes_ = 0;
  bool in_head_ = true;
  bool skip_body_ = false;
  // Header callback state: 0 none yet, 1 in field, 2 in value, 3 value done.
  int header_state_ = 0;
  int trailer_count_ = 0;
  HeaderField trailer_{};
  // The current trailer field's name, for the framing check (a span would not
  // survive the buffer moving between reads); longer names are not framing.
  std::array<char, 20> trailer_name_{};
  std::size_t trailer_name_len_ = 0;
  // Where the current feed() starts and ends, its number (non-empty feeds),
  // and the number of the feed whose very end the last value piece reached:
  // a value may only go on at the start of the feed right after that one
  // (anything else is obs-fold). Pointers, not offsets: the buffer moves
  // between feeds once the head is done (trailers).
  const char* feed_begin_ = nullptr;
  const char* feed_end_ = nullptr;
  std::uint64_t feeds_ = 0;
  std::uint64_t value_end_feed_ = 0;  // 0: the last piece did not reach a feed's end
  bool head_done_ = false;
  bool message_done_ = false;
  std::array<char, 2> tail_{};  // the last two bytes consumed, across feeds
};

// Case-insensitive ASCII comparison. Inline: the data path compares every
// header name with a few fixed names, and most differ in length.
inline bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] + 32) : a[i];
    const char y = b[i] >= 'A' && b[i] <= 'Z' ? static_cast<char>(b[i] + 32) : b[i];
    if (x != y) return false;
  }
  return true;
}

// True if the comma-separated list `value` contains `token` (case-insensitive).
bool listContainsToken(std::string_view value, std::string_view token);

}  // namespace sluice::http
