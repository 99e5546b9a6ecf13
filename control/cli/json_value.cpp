#include "json_value.hpp"

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace nplb {

namespace {

class Parser {
 public:
  Parser(std::string_view text, std::size_t max_depth) : s_(text), max_depth_(max_depth) {}

  JsonValue run() {
    skip_ws();
    if (p_ >= s_.size()) error(s_.empty() ? "empty input" : "no value (only whitespace)");
    JsonValue v = value(0);
    skip_ws();
    if (p_ < s_.size()) error("unexpected " + describe(p_) + " after the value");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& msg) const { error_at(p_, msg); }
  [[noreturn]] void error_at(std::size_t at, const std::string& msg) const {
    std::size_t line = 1, col = 1;
    for (std::size_t i = 0; i < at && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw JsonParseError("JSON: line " + std::to_string(line) + ", column " + std::to_string(col) +
                             ": " + msg,
                         at, line, col);
  }

  std::string describe(std::size_t at) const {
    if (at >= s_.size()) return "end of input";
    unsigned char c = static_cast<unsigned char>(s_[at]);
    char buf[32];
    if (c >= 0x21 && c < 0x7f)
      std::snprintf(buf, sizeof buf, "character '%c'", c);
    else
      std::snprintf(buf, sizeof buf, "byte 0x%02x", c);
    return buf;
  }

  void skip_ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\n' || s_[p_] == '\r')) ++p_;
  }

  bool literal(std::string_view word) {
    if (s_.substr(p_, word.size()) != word) return false;
    p_ += word.size();
    return true;
  }

  JsonValue value(std::size_t depth) {
    if (p_ >= s_.size()) error("unexpected end of input, expected a value");
    char c = s_[p_];
    switch (c) {
      case '{': return object(depth + 1);
      case '[': return array(depth + 1);
      case '"': return JsonValue::string(string());
      case 't':
        if (literal("true")) return JsonValue::boolean(true);
        break;
      case 'f':
        if (literal("false")) return JsonValue::boolean(false);
        break;
      case 'n':
        if (literal("null")) return JsonValue();
        break;
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return number();
    }
    error("unexpected " + describe(p_) + ", expected a value");
  }

  JsonValue object(std::size_t depth) {
    if (depth > max_depth_) error("nesting deeper than " + std::to_string(max_depth_) + " levels");
    ++p_;  // '{'
    JsonValue::Object members;
    skip_ws();
    if (p_ < s_.size() && s_[p_] == '}') {
      ++p_;
      return JsonValue::object(std::move(members));
    }
    for (;;) {
      skip_ws();
      if (p_ >= s_.size() || s_[p_] != '"') error("unexpected " + describe(p_) + ", expected a string key");
      std::size_t key_at = p_;
      std::string key = string();
      for (const auto& m : members)
        if (m.first == key) error_at(key_at, "duplicate key " + json_quote(key));
      skip_ws();
      if (p_ >= s_.size() || s_[p_] != ':') error("unexpected " + describe(p_) + ", expected ':'");
      ++p_;
      skip_ws();
      JsonValue v = value(depth);
      members.emplace_back(std::move(key), std::move(v));
      skip_ws();
      if (p_ < s_.size() && s_[p_] == ',') {
        ++p_;
        continue;
      }
      if (p_ < s_.size() && s_[p_] == '}') {
        ++p_;
        return JsonValue::object(std::move(members));
      }
      error("unexpected " + describe(p_) + ", expected ',' or '}'");
    }
  }

  JsonValue array(std::size_t depth) {
    if (depth > max_depth_) error("nesting deeper than " + std::to_string(max_depth_) + " levels");
    ++p_;  // '['
    JsonValue::Array items;
    skip_ws();
    if (p_ < s_.size() && s_[p_] == ']') {
      ++p_;
      return JsonValue::array(std::move(items));
    }
    for (;;) {
      skip_ws();
      items.push_back(value(depth));
      skip_ws();
      if (p_ < s_.size() && s_[p_] == ',') {
        ++p_;
        continue;
      }
      if (p_ < s_.size() && s_[p_] == ']') {
        ++p_;
        return JsonValue::array(std::move(items));
      }
      error("unexpected " + describe(p_) + ", expected ',' or ']'");
    }
  }

  JsonValue number() {
    std::size_t start = p_;
    auto digit = [&] { return p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9'; };
    if (s_[p_] == '-') ++p_;
    if (!digit()) error("a number needs digits after '-'");
    if (s_[p_] == '0') {
      ++p_;
      if (digit()) error_at(start, "leading zeros are not allowed in numbers");
    } else {
      while (digit()) ++p_;
    }
    if (p_ < s_.size() && s_[p_] == '.') {
      ++p_;
      if (!digit()) error("a number needs digits after '.'");
      while (digit()) ++p_;
    }
    if (p_ < s_.size() && (s_[p_] == 'e' || s_[p_] == 'E')) {
      ++p_;
      if (p_ < s_.size() && (s_[p_] == '+' || s_[p_] == '-')) ++p_;
      if (!digit()) error("a number needs digits in its exponent");
      while (digit()) ++p_;
    }
    return JsonValue::number(std::string(s_.substr(start, p_ - start)));
  }

  unsigned hex4() {
    if (p_ + 4 > s_.size()) error("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[p_ + static_cast<std::size_t>(i)];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else error_at(p_ + static_cast<std::size_t>(i), "bad hex digit in \\u escape");
    }
    p_ += 4;
    return v;
  }

  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // One UTF-8 sequence starting at p_ (a lead byte >= 0x80), validated and copied.
  void utf8(std::string& out) {
    std::size_t at = p_;
    auto b = [&](std::size_t i) { return static_cast<unsigned char>(s_[i]); };
    unsigned char c = b(p_);
    std::size_t len;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      error_at(at, "invalid UTF-8");
    }
    if (p_ + len > s_.size()) error_at(at, "truncated UTF-8 sequence");
    for (std::size_t i = 1; i < len; ++i) {
      if ((b(p_ + i) & 0xC0) != 0x80) error_at(at, "invalid UTF-8");
      cp = (cp << 6) | (b(p_ + i) & 0x3F);
    }
    // Overlong forms, surrogates, beyond U+10FFFF.
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      error_at(at, "invalid UTF-8");
    out.append(s_.substr(p_, len));
    p_ += len;
  }

  std::string string() {
    std::size_t start = p_;
    ++p_;  // '"'
    std::string out;
    for (;;) {
      if (p_ >= s_.size()) error_at(start, "unterminated string");
      unsigned char c = static_cast<unsigned char>(s_[p_]);
      if (c == '"') {
        ++p_;
        return out;
      }
      if (c < 0x20) error("raw control character in string (must be escaped)");
      if (c >= 0x80) {
        utf8(out);
        continue;
      }
      if (c != '\\') {
        out += static_cast<char>(c);
        ++p_;
        continue;
      }
      std::size_t esc = p_;
      ++p_;
      if (p_ >= s_.size()) error_at(start, "unterminated string");
      char e = s_[p_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) error_at(esc, "lone low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(p_, 2) != "\\u") error_at(esc, "high surrogate not followed by a low one");
            p_ += 2;
            unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) error_at(esc, "high surrogate not followed by a low one");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          put_utf8(out, cp);
          break;
        }
        default:
          error_at(esc, "bad escape \\" + std::string(1, e));
      }
    }
  }

  std::string_view s_;
  std::size_t p_ = 0;
  std::size_t max_depth_;
};

const JsonValue& null_value() {
  static const JsonValue v;
  return v;
}

// YAML: does this plain scalar need quotes?
bool yaml_needs_quotes(std::string_view s) {
  if (s.empty()) return true;
  static const char* const words[] = {"true", "false", "yes", "no", "on", "off", "y", "n",
                                      "null", "~", ".inf", "-.inf", "+.inf", ".nan"};
  std::string lower;
  for (char c : s) lower += static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
  for (const char* w : words)
    if (lower == w) return true;
  // Indicators that cannot start a plain scalar.
  if (std::string_view("-?:,[]{}#&*!|>'\"%@` \t").find(s.front()) != std::string_view::npos) {
    // "-" followed by a letter is fine ("-foo") except for the indicator forms above.
    if (!(s.front() == '-' && s.size() > 1 && s[1] != ' ' && !(s[1] >= '0' && s[1] <= '9') && s[1] != '.'))
      return true;
  }
  if (s.back() == ' ' || s.back() == '\t') return true;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
    if (c == ':' || c == '#') return true;  // "a: b", "a #b", and YAML 1.1 sexagesimals
  }
  // Numbers (int, float, hex, octal), dates and times read back as non-strings.
  bool numberish = true;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E' ||
          c == '_' || c == 'x' || c == 'o' || c == 'X' || c == 'O' ||
          (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
      numberish = false;
  bool has_digit = false;
  for (char c : s) has_digit |= (c >= '0' && c <= '9');
  if (numberish && has_digit) {
    // Dotted addresses like 198.51.100.21 are plain strings in YAML; other
    // number-like text is quoted.
    int dots = 0;
    bool only_digits_dots = true;
    for (char c : s) {
      dots += c == '.';
      only_digits_dots &= (c >= '0' && c <= '9') || c == '.';
    }
    if (!(only_digits_dots && dots >= 2)) return true;
  }
  if (s.size() >= 10 && s[4] == '-' && s[7] == '-' && s[0] >= '0' && s[0] <= '9') return true;
  return false;
}

}  // namespace

JsonValue JsonValue::parse(std::string_view text, std::size_t max_depth) {
  return Parser(text, max_depth).run();
}

JsonValue JsonValue::boolean(bool b) {
  JsonValue v;
  v.type_ = Type::Bool;
  v.bool_ = b;
  return v;
}

JsonValue JsonValue::number(std::string text) {
  JsonValue v;
  v.type_ = Type::Number;
  v.text_ = std::move(text);
  return v;
}

JsonValue JsonValue::string(std::string s) {
  JsonValue v;
  v.type_ = Type::String;
  v.text_ = std::move(s);
  return v;
}

JsonValue JsonValue::array(Array items) {
  JsonValue v;
  v.type_ = Type::Array;
  v.array_ = std::move(items);
  return v;
}

JsonValue JsonValue::object(Object members) {
  JsonValue v;
  v.type_ = Type::Object;
  v.object_ = std::move(members);
  return v;
}

static const char* type_name(JsonValue::Type t) {
  switch (t) {
    case JsonValue::Type::Null: return "null";
    case JsonValue::Type::Bool: return "a boolean";
    case JsonValue::Type::Number: return "a number";
    case JsonValue::Type::String: return "a string";
    case JsonValue::Type::Array: return "an array";
    case JsonValue::Type::Object: return "an object";
  }
  return "?";
}

#define NPLB_JSON_EXPECT(t, what)                                                     \
  do {                                                                                \
    if (type_ != (t)) throw JsonTypeError(std::string("JSON: expected ") + (what) + \
                                          ", got " + type_name(type_));             \
  } while (0)

bool JsonValue::as_bool() const {
  NPLB_JSON_EXPECT(Type::Bool, "a boolean");
  return bool_;
}

double JsonValue::as_double() const {
  NPLB_JSON_EXPECT(Type::Number, "a number");
  return std::strtod(text_.c_str(), nullptr);
}

int64_t JsonValue::as_int64() const {
  NPLB_JSON_EXPECT(Type::Number, "a number");
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text_.data(), text_.data() + text_.size(), v);
  if (ec != std::errc() || end != text_.data() + text_.size())
    throw JsonTypeError("JSON: " + text_ + " is not a 64-bit integer");
  return v;
}

uint64_t JsonValue::as_uint64() const {
  NPLB_JSON_EXPECT(Type::Number, "a number");
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text_.data(), text_.data() + text_.size(), v);
  if (ec != std::errc() || end != text_.data() + text_.size())
    throw JsonTypeError("JSON: " + text_ + " is not an unsigned 64-bit integer");
  return v;
}

const std::string& JsonValue::as_string() const {
  NPLB_JSON_EXPECT(Type::String, "a string");
  return text_;
}

const std::string& JsonValue::number_text() const {
  NPLB_JSON_EXPECT(Type::Number, "a number");
  return text_;
}

const JsonValue::Array& JsonValue::as_array() const {
  NPLB_JSON_EXPECT(Type::Array, "an array");
  return array_;
}

const JsonValue::Object& JsonValue::as_object() const {
  NPLB_JSON_EXPECT(Type::Object, "an object");
  return object_;
}

#undef NPLB_JSON_EXPECT

const JsonValue* JsonValue::find(std::string_view key) const {
  if (type_ != Type::Object) return nullptr;
  for (const auto& m : object_)
    if (m.first == key) return &m.second;
  return nullptr;
}

const JsonValue& JsonValue::operator[](std::string_view key) const {
  const JsonValue* v = find(key);
  return v ? *v : null_value();
}

const JsonValue& JsonValue::operator[](std::size_t index) const {
  if (type_ != Type::Array || index >= array_.size()) return null_value();
  return array_[index];
}

std::size_t JsonValue::size() const {
  if (type_ == Type::Array) return array_.size();
  if (type_ == Type::Object) return object_.size();
  return 0;
}

std::string JsonValue::text_or(std::string_view fallback) const {
  switch (type_) {
    case Type::String:
    case Type::Number: return text_;
    case Type::Bool: return bool_ ? "true" : "false";
    default: return std::string(fallback);
  }
}

bool operator==(const JsonValue& a, const JsonValue& b) {
  if (a.type_ != b.type_) return false;
  switch (a.type_) {
    case JsonValue::Type::Null: return true;
    case JsonValue::Type::Bool: return a.bool_ == b.bool_;
    case JsonValue::Type::Number: return a.text_ == b.text_ || a.as_double() == b.as_double();
    case JsonValue::Type::String: return a.text_ == b.text_;
    case JsonValue::Type::Array: return a.array_ == b.array_;
    case JsonValue::Type::Object: return a.object_ == b.object_;
  }
  return false;
}

std::string json_quote(std::string_view s) {
  std::string r = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': r += "\\\""; break;
      case '\\': r += "\\\\"; break;
      case '\n': r += "\\n"; break;
      case '\r': r += "\\r"; break;
      case '\t': r += "\\t"; break;
      case '\b': r += "\\b"; break;
      case '\f': r += "\\f"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          r += buf;
        } else {
          r += static_cast<char>(c);
        }
    }
  }
  r += '"';
  return r;
}

std::string JsonValue::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

void JsonValue::dump_to(std::string& out, int indent, int level) const {
  auto newline = [&](int lvl) {
    out += '\n';
    out.append(static_cast<std::size_t>(indent * lvl), ' ');
  };
  switch (type_) {
    case Type::Null: out += "null"; return;
    case Type::Bool: out += bool_ ? "true" : "false"; return;
    case Type::Number: out += text_; return;
    case Type::String: out += json_quote(text_); return;
    case Type::Array:
      if (array_.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (std::size_t i = 0; i < array_.size(); ++i) {
        if (i) out += indent < 0 ? ", " : ",";
        if (indent >= 0) newline(level + 1);
        array_[i].dump_to(out, indent, level + 1);
      }
      if (indent >= 0) newline(level);
      out += ']';
      return;
    case Type::Object:
      if (object_.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      for (std::size_t i = 0; i < object_.size(); ++i) {
        if (i) out += indent < 0 ? ", " : ",";
        if (indent >= 0) newline(level + 1);
        out += json_quote(object_[i].first);
        out += ": ";
        object_[i].second.dump_to(out, indent, level + 1);
      }
      if (indent >= 0) newline(level);
      out += '}';
      return;
  }
}

std::string JsonValue::to_yaml() const {
  std::string out;
  if (type_ == Type::Array || type_ == Type::Object) {
    if (size() == 0) {
      out = type_ == Type::Array ? "[]\n" : "{}\n";
    } else {
      yaml_to(out, 0, false);
    }
  } else {
    yaml_to(out, 0, false);
    out += '\n';
  }
  return out;
}

// Scalars append their text; containers append complete lines. For a container, the
// caller has written the key (or "- ") and, for a mapping, the newline.
void JsonValue::yaml_to(std::string& out, int level, bool in_sequence) const {
  auto pad = [&](int lvl) { out.append(static_cast<std::size_t>(2 * lvl), ' '); };
  auto scalar = [](const JsonValue& v) -> std::string {
    switch (v.type_) {
      case Type::Null: return "null";
      case Type::Bool: return v.bool_ ? "true" : "false";
      case Type::Number: return v.text_;
      case Type::String: return yaml_needs_quotes(v.text_) ? json_quote(v.text_) : v.text_;
      case Type::Array: return "[]";
      case Type::Object: return "{}";
    }
    return "";
  };
  auto key_text = [](const std::string& k) { return yaml_needs_quotes(k) ? json_quote(k) : k; };

  if (type_ == Type::Object && !object_.empty()) {
    bool first = true;
    for (const auto& [k, v] : object_) {
      // The first key of a mapping inside a sequence shares the "- " line.
      if (!(first && in_sequence)) pad(level);
      first = false;
      out += key_text(k);
      out += ':';
      if ((v.is_object() || v.is_array()) && v.size() > 0) {
        out += '\n';
        // kubectl's style: a sequence under a key sits at the key's level.
        v.yaml_to(out, v.is_array() ? level : level + 1, false);
      } else {
        out += ' ';
        out += scalar(v);
        out += '\n';
      }
    }
    return;
  }
  if (type_ == Type::Array && !array_.empty()) {
    for (const auto& item : array_) {
      pad(level);
      if (item.is_object() && item.size() > 0) {
        out += "- ";
        item.yaml_to(out, level + 1, true);
      } else if (item.is_array() && item.size() > 0) {
        out += "-\n";
        item.yaml_to(out, level + 1, false);
      } else {
        out += "- ";
        out += scalar(item);
        out += '\n';
      }
    }
    return;
  }
  out += scalar(*this);
}

}  // namespace nplb
