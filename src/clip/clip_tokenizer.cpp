// Compiled part of include/clprompt/clip/clip_tokenizer.hpp: CLIP's byte-level BPE tokenizer.
#include "clprompt/clip/clip_tokenizer.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <limits>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

#include "clprompt/core/json_parse.hpp"

namespace clprompt {
namespace detail {
namespace {

constexpr std::string_view kStartOfText = "<|startoftext|>";
constexpr std::string_view kEndOfText = "<|endoftext|>";
constexpr std::string_view kEndOfWord = "</w>";

struct Range {
  char32_t lo, hi;
};

// \p{L} in the blocks the header lists (exact there). Sorted by `lo`.
constexpr Range kLetters[] = {
    {0x41, 0x5A},        {0x61, 0x7A},        {0xAA, 0xAA},        {0xB5, 0xB5},        {0xBA, 0xBA},
    {0xC0, 0xD6},        {0xD8, 0xF6},        {0xF8, 0x2C1},       {0x2C6, 0x2D1},      {0x2E0, 0x2E4},
    {0x2EC, 0x2EC},      {0x2EE, 0x2EE},      {0x370, 0x374},      {0x376, 0x377},      {0x37A, 0x37D},
    {0x37F, 0x37F},      {0x386, 0x386},      {0x388, 0x38A},      {0x38C, 0x38C},      {0x38E, 0x3A1},
    {0x3A3, 0x3F5},      {0x3F7, 0x481},      {0x48A, 0x52F},      {0x531, 0x556},      {0x559, 0x559},
    {0x560, 0x588},      {0x5D0, 0x5EA},      {0x5EF, 0x5F2},      {0x620, 0x64A},      {0x66E, 0x66F},
    {0x671, 0x6D3},      {0x6D5, 0x6D5},      {0x6E5, 0x6E6},      {0x6EE, 0x6EF},      {0x6FA, 0x6FC},
    {0x6FF, 0x6FF},      {0x904, 0x939},      {0x93D, 0x93D},      {0x950, 0x950},      {0x958, 0x961},
    {0x971, 0x980},      {0xE01, 0xE30},      {0xE32, 0xE33},      {0xE40, 0xE46},      {0x10A0, 0x10C5},
    {0x10C7, 0x10C7},    {0x10CD, 0x10CD},    {0x10D0, 0x10FA},    {0x10FC, 0x11FF},    {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D},    {0x1F20, 0x1F45},    {0x1F48, 0x1F4D},    {0x1F50, 0x1F57},    {0x1F59, 0x1F59},
    {0x1F5B, 0x1F5B},    {0x1F5D, 0x1F5D},    {0x1F5F, 0x1F7D},    {0x1F80, 0x1FB4},    {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},    {0x1FC2, 0x1FC4},    {0x1FC6, 0x1FCC},    {0x1FD0, 0x1FD3},    {0x1FD6, 0x1FDB},
    {0x1FE0, 0x1FEC},    {0x1FF2, 0x1FF4},    {0x1FF6, 0x1FFC},    {0x3005, 0x3006},    {0x3031, 0x3035},
    {0x303B, 0x303C},    {0x3041, 0x3096},    {0x309D, 0x309F},    {0x30A1, 0x30FA},    {0x30FC, 0x30FF},
    {0x3105, 0x312F},    {0x3131, 0x318E},    {0x31A0, 0x31BF},    {0x31F0, 0x31FF},    {0x3400, 0x4DBF},
    {0x4E00, 0x9FFF},    {0xAC00, 0xD7A3},    {0xF900, 0xFA6D},    {0xFA70, 0xFAD9},    {0xFB00, 0xFB06},
    {0xFF21, 0xFF3A},    {0xFF41, 0xFF5A},    {0xFF66, 0xFFBE},    {0xFFC2, 0xFFC7},    {0xFFCA, 0xFFCF},
    {0xFFD2, 0xFFD7},    {0xFFDA, 0xFFDC},    {0x20000, 0x2A6DF},  {0x2A700, 0x2EBE0},  {0x30000, 0x3134A},
};

// \p{N} (digits, letter-like numerals, superscripts, fractions): exact below U+0100.
constexpr Range kNumbers[] = {
    {0x30, 0x39},     {0xB2, 0xB3},     {0xB9, 0xB9},     {0xBC, 0xBE},     {0x660, 0x669},   {0x6F0, 0x6F9},
    {0x966, 0x96F},   {0x9E6, 0x9EF},   {0xE50, 0xE59},   {0x2070, 0x2070}, {0x2074, 0x2079}, {0x2080, 0x2089},
    {0x2150, 0x2182}, {0x2185, 0x2189}, {0x2460, 0x249B}, {0x24EA, 0x24FF}, {0x2776, 0x2793}, {0x3007, 0x3007},
    {0x3021, 0x3029}, {0x3038, 0x303A}, {0x3192, 0x3195}, {0x3220, 0x3229}, {0x3248, 0x324F}, {0x3251, 0x325F},
    {0x3280, 0x3289}, {0x32B1, 0x32BF}, {0xFF10, 0xFF19},
};

static_assert(std::ranges::is_sorted(kLetters, {}, &Range::lo) && std::ranges::is_sorted(kNumbers, {}, &Range::lo));

template <std::size_t N>
bool in_ranges(char32_t c, const Range (&ranges)[N]) {
  const auto* it = std::upper_bound(ranges, ranges + N, c, [](char32_t v, const Range& r) { return v < r.lo; });
  return it != ranges && c <= (it - 1)->hi;
}

// Windows-1252's characters for bytes 0x80-0x9F, where Python's html.unescape and ftfy's
// fix_c1_controls both send C1 code points (five bytes have none and stay as they are).
constexpr char32_t kCp1252High[32] = {
    0x20AC, 0x81,   0x201A, 0x192,  0x201E, 0x2026, 0x2020, 0x2021, 0x2C6,  0x2030, 0x160,
    0x2039, 0x152,  0x8D,   0x17D,  0x8F,   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x2DC,  0x2122, 0x161,  0x203A, 0x153,  0x9D,   0x17E,  0x178};

// Byte symbols in CLIP's vocabulary order, which is ascending code point: printable bytes
// map to themselves, the rest to U+0100 and up in byte order.
std::vector<char32_t> byte_symbols_in_vocab_order() {
  auto symbols = bytes_to_unicode();
  std::ranges::sort(symbols);
  return symbols;
}

// Inverse of bytes_to_unicode: the byte of a symbol, or -1 for other code points.
int symbol_to_byte(char32_t cp) {
  static const auto table = [] {
    std::array<int, 256 + 68> t;
    t.fill(-1);
    for (int b = 0; b < 256; ++b) t[bytes_to_unicode()[static_cast<std::size_t>(b)]] = b;
    return t;
  }();
  return cp < table.size() ? table[cp] : -1;
}

// A named HTML entity at the start of `s` (just after '&'): {characters consumed, value}.
// As html.unescape: "name;" for the names below; the legacy ones (all but apos) also match
// without ';' and as a prefix ("&ampx" -> "&x").
std::optional<std::pair<std::size_t, char32_t>> named_entity(std::u32string_view s) {
  struct Entity {
    std::u32string_view name;
    char32_t value;
    bool legacy;
  };
  static constexpr Entity kEntities[] = {{U"amp", '&', true}, {U"lt", '<', true},    {U"gt", '>', true},
                                         {U"quot", '"', true}, {U"nbsp", 0xA0, true}, {U"apos", '\'', false},
                                         {U"AMP", '&', true}, {U"LT", '<', true},    {U"GT", '>', true},
                                         {U"QUOT", '"', true}};
  const std::size_t name_len = std::min<std::size_t>(32, s.find_first_of(U"\t\n\f <&#;"));
  const bool semicolon = name_len < s.size() && s[name_len] == ';';
  for (const auto& e : kEntities)
    if (semicolon && s.substr(0, name_len) == e.name) return std::pair{name_len + 1, e.value};
  for (const auto& e : kEntities)
    if (e.legacy && s.substr(0, name_len).starts_with(e.name)) return std::pair{e.name.size(), e.value};
  return std::nullopt;
}

// A numeric entity ("#65;", "#x41", ...) at the start of `s`: {characters consumed, value},
// value nullopt when html.unescape drops the character.
std::optional<std::pair<std::size_t, std::optional<char32_t>>> numeric_entity(std::u32string_view s) {
  if (s.empty() || s[0] != '#') return std::nullopt;
  const bool hex = s.size() > 1 && (s[1] == 'x' || s[1] == 'X');
  std::size_t i = hex ? 2 : 1;
  uint32_t value = 0;
  const std::size_t digits_start = i;
  for (; i < s.size(); ++i) {
    const char32_t c = s[i];
    int digit = -1;
    if (c >= '0' && c <= '9') digit = static_cast<int>(c - '0');
    else if (hex && (c | 0x20) >= 'a' && (c | 0x20) <= 'f') digit = static_cast<int>((c | 0x20) - 'a' + 10);
    if (digit < 0) break;
    value = std::min<uint32_t>(0x110000, value * (hex ? 16 : 10) + static_cast<uint32_t>(digit));
  }
  if (i == digits_start) return std::nullopt;
  if (i < s.size() && s[i] == ';') ++i;
  std::optional<char32_t> out = value;
  if (value == 0 || (value >= 0xD800 && value <= 0xDFFF) || value > 0x10FFFF) out = 0xFFFD;
  else if (value >= 0x80 && value <= 0x9F) out = kCp1252High[value - 0x80];
  else if ((value >= 0x1 && value <= 0x8) || value == 0xB || (value >= 0xE && value <= 0x1F) || value == 0x7F ||
           (value >= 0xFDD0 && value <= 0xFDEF) || (value & 0xFFFE) == 0xFFFE)
    out = std::nullopt;  // Python drops these non-characters
  return std::pair{i, out};
}

// ftfy's character-level fixes, in its order: C1 controls, Latin ligatures, fullwidth ASCII,
// curly quotes, control characters (terminal escapes and line breaks are left to the rest).
void append_ftfy_fixed(std::u32string& out, char32_t c) {
  if (c >= 0x80 && c <= 0x9F) c = kCp1252High[c - 0x80];
  static constexpr std::pair<char32_t, std::u32string_view> kLigatures[] = {
      {0x132, U"IJ"},   {0x133, U"ij"},   {0x149, U"\u02BCn"}, {0x1C4, U"D\u017D"}, {0x1C5, U"D\u017E"},
      {0x1C6, U"d\u017E"}, {0x1C7, U"LJ"},   {0x1C8, U"Lj"},     {0x1C9, U"lj"},       {0x1CA, U"NJ"},
      {0x1CB, U"Nj"},   {0x1CC, U"nj"},   {0x1F1, U"DZ"},     {0x1F2, U"Dz"},       {0x1F3, U"dz"},
      {0xFB00, U"ff"},  {0xFB01, U"fi"},  {0xFB02, U"fl"},    {0xFB03, U"ffi"},     {0xFB04, U"ffl"},
      {0xFB05, U"\u017Ft"}, {0xFB06, U"st"}};
  const auto* lig = std::ranges::find(kLigatures, c, &std::pair<char32_t, std::u32string_view>::first);
  const std::u32string_view ligature = lig != std::end(kLigatures) ? lig->second : std::u32string_view(&c, 1);
  for (char32_t l : ligature) {
    if (l >= 0xFF01 && l <= 0xFF5E) l -= 0xFEE0;  // fullwidth ASCII
    if (l == 0x3000) l = ' ';                      // ideographic space
    if (l == 0x2BC || (l >= 0x2018 && l <= 0x201B)) l = '\'';
    if (l >= 0x201C && l <= 0x201F) l = '"';
    const bool control = l <= 0x8 || l == 0xB || (l >= 0xE && l <= 0x1F) || l == 0x7F ||
                         (l >= 0x206A && l <= 0x206F) || l == 0xFEFF || (l >= 0xFFF9 && l <= 0xFFFC);
    if (!control) out += l;
  }
}

std::u32string strip(std::u32string_view text) {
  std::size_t b = 0, e = text.size();
  while (b < e && is_space(text[b])) ++b;
  while (e > b && is_space(text[e - 1])) --e;
  return std::u32string(text.substr(b, e - b));
}

// Simple (one-to-one) lower-casing of the covered ranges; İ and final sigma are in to_lower.
char32_t lower_char(char32_t c) {
  auto in = [c](char32_t lo, char32_t hi) { return c >= lo && c <= hi; };
  // Runs of upper/lower pairs where the capital is at an even (or odd) code point.
  auto pair_at = [c](bool capital_even) { return (c % 2 == 0) == capital_even ? c + 1 : c; };
  if (in('A', 'Z') || (in(0xC0, 0xDE) && c != 0xD7) || in(0x391, 0x3A1) || in(0x3A3, 0x3AB) || in(0x410, 0x42F) ||
      in(0xFF21, 0xFF3A))
    return c + 32;
  if (c == 0x178) return 0xFF;
  if (in(0x100, 0x137) || in(0x14A, 0x177) || in(0x1DE, 0x1EF) || in(0x1F8, 0x21F) || in(0x222, 0x233) ||
      in(0x246, 0x24F) || in(0x3D8, 0x3EF) || in(0x460, 0x481) || in(0x48A, 0x4BF) || in(0x4D0, 0x52F) ||
      in(0x1E00, 0x1E95) || in(0x1EA0, 0x1EFF))
    return pair_at(true);
  if (in(0x139, 0x148) || in(0x179, 0x17E) || in(0x1CD, 0x1DC) || in(0x4C1, 0x4CE)) return pair_at(false);
  if (c == 0x386) return 0x3AC;
  if (in(0x388, 0x38A)) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (in(0x38E, 0x38F)) return c + 63;
  if (in(0x400, 0x40F)) return c + 80;
  if (c == 0x4C0) return 0x4CF;
  if (in(0x531, 0x556)) return c + 48;
  if (c == 0x1E9E) return 0xDF;
  if (c == 0x2126) return 0x3C9;  // ohm sign, Kelvin sign, angstrom sign
  if (c == 0x212A) return 'k';
  if (c == 0x212B) return 0xE5;
  return c;
}

// Approximations of Unicode's Cased and Case_Ignorable properties, for final sigma: letters
// of the bicameral scripts covered, and apostrophes, dots, modifier letters, combining marks.
bool is_cased(char32_t c) {
  auto in = [c](char32_t lo, char32_t hi) { return c >= lo && c <= hi; };
  const bool bicameral = c < 0x590 || in(0x10A0, 0x10FF) || in(0x1E00, 0x1FFF) || in(0xFF21, 0xFF5A);
  const bool uncased = c == 0x1BB || in(0x1C0, 0x1C3) || c == 0x294 || in(0x2B9, 0x2BF) || in(0x2C6, 0x2D1) ||
                       c == 0x2EC || c == 0x2EE || c == 0x374 || c == 0x559;
  return is_letter(c) && bicameral && !uncased;
}
bool is_case_ignorable(char32_t c) {
  static constexpr std::u32string_view kSingles = U"'.:^`\u00A8\u00AD\u00AF\u00B4\u00B7\u00B8\u0640\u2018\u2019\u2024\u2027";
  return kSingles.find(c) != std::u32string_view::npos || (c >= 0x2B0 && c <= 0x36F);
}

// Python's Final_Sigma rule: Σ lower-cases to ς after a cased letter and not before one,
// skipping case-ignorable characters both ways.
bool final_sigma(std::u32string_view text, std::size_t i) {
  std::size_t j = i;
  while (j > 0 && is_case_ignorable(text[j - 1])) --j;
  if (j == 0 || !is_cased(text[j - 1])) return false;
  for (j = i + 1; j < text.size() && is_case_ignorable(text[j]);) ++j;
  return j == text.size() || !is_cased(text[j]);
}

// A literal at the start of `s`, compared ASCII-case-insensitively (the regex has IGNORECASE).
bool starts_with_nocase(std::u32string_view s, std::u32string_view literal) {
  auto fold = [](char32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; };
  return s.size() >= literal.size() &&
         std::equal(literal.begin(), literal.end(), s.begin(), [&](char32_t a, char32_t b) { return a == fold(b); });
}

// CLIP's bpe(): split into symbols, mark the word end, then repeatedly merge every occurrence
// of the adjacent pair with the lowest rank until no ranked pair is left.
std::vector<std::string> bpe(const std::string& token, const std::unordered_map<std::string, std::size_t>& ranks) {
  if (token == kStartOfText || token == kEndOfText) return {token};
  std::vector<std::string> word;
  for (char32_t cp : utf8_decode(token)) utf8_append(word.emplace_back(), cp);
  if (word.empty()) return {};
  word.back() += kEndOfWord;
  while (word.size() > 1) {
    std::size_t best = std::numeric_limits<std::size_t>::max();
    std::size_t best_at = 0;
    for (std::size_t i = 0; i + 1 < word.size(); ++i) {
      const auto it = ranks.find(word[i] + ' ' + word[i + 1]);
      if (it != ranks.end() && it->second < best) best = it->second, best_at = i;
    }
    if (best == std::numeric_limits<std::size_t>::max()) break;
    const std::string first = word[best_at], second = word[best_at + 1];
    std::vector<std::string> merged;
    for (std::size_t i = 0; i < word.size(); ++i) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) merged.push_back(first + second), ++i;
      else merged.push_back(word[i]);
    }
    word = std::move(merged);
  }
  return word;
}

// The whole file, gunzipped when it is gzip (zlib reads plain files as they are).
std::string read_file(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw TokenizerError(path, "cannot open");
  std::string data;
  std::array<char, 1 << 16> buffer;
  int n = 0;
  // Tokenizer files are a few MB (CLIP's: 1.6 MB vocab.json, 1.4 MB of merges); a bound keeps a
  // corrupt or hostile gzip from inflating into all memory.
  constexpr std::size_t kMaxBytes = std::size_t{256} << 20;
  while ((n = gzread(f, buffer.data(), static_cast<unsigned>(buffer.size()))) > 0) {
    data.append(buffer.data(), n);
    if (data.size() > kMaxBytes) {
      gzclose(f);
      throw TokenizerError(path, fmt::format("more than {} bytes (decompressed): not a tokenizer file", kMaxBytes));
    }
  }
  int code = Z_OK;
  std::string message = gzerror(f, &code);
  gzclose(f);
  if (message.starts_with(path + ": ")) message.erase(0, path.size() + 2);  // zlib prefixes the path
  if (n < 0 || (code != Z_OK && code != Z_STREAM_END)) throw TokenizerError(path, "cannot read: " + message);
  return data;
}

struct Merge {
  std::string first, second;
  std::size_t line;  // 1-based, for error messages
};

// merges.txt / bpe_simple_vocab_16e6.txt: line 1 is a header, then "first second" lines.
std::vector<Merge> read_merges(const std::string& path, std::size_t max_merges) {
  const std::string data = read_file(path);
  if (data.empty()) throw TokenizerError(path, "is empty; expected a header line, then one merge per line");
  std::vector<Merge> merges;
  std::size_t begin = data.find('\n');
  for (std::size_t line = 2; begin != std::string::npos && begin + 1 < data.size() && merges.size() < max_merges;
       ++line) {
    std::size_t end = data.find('\n', begin + 1);
    std::string_view text = std::string_view(data).substr(begin + 1, end - begin - 1);
    // Python's str.split(): surrounding whitespace (and a Windows '\r') is ignored.
    while (!text.empty() && (text.back() == '\r' || text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    const std::size_t a_end = text.find_first_of(" \t"), b_begin = text.find_first_not_of(" \t", a_end);
    if (b_begin == std::string_view::npos || text.find_first_of(" \t", b_begin) != std::string_view::npos) {
      const std::string shown(text.substr(0, 60));
      throw TokenizerError(path, "line " + std::to_string(line) + ": expected two space-separated symbols, got '" +
                                     shown + "'");
    }
    merges.push_back({std::string(text.substr(0, a_end)), std::string(text.substr(b_begin)), line});
    begin = end;
  }
  return merges;
}

}  // namespace

const std::vector<char32_t>& bytes_to_unicode() {
  static const std::vector<char32_t> table = [] {
    std::vector<char32_t> t(256);
    char32_t next = 256;
    for (char32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = printable ? b : next++;
    }
    return t;
  }();
  return table;
}

std::u32string utf8_decode(std::string_view bytes) {
  std::u32string out;
  std::size_t i = 0;
  while (i < bytes.size()) {
    const auto lead = static_cast<unsigned char>(bytes[i]);
    std::size_t len = 0;  // of the sequence `lead` starts; 0 when it cannot start one
    if (lead < 0x80) len = 1;
    else if (lead >= 0xC2 && lead <= 0xDF) len = 2;
    else if (lead >= 0xE0 && lead <= 0xEF) len = 3;
    else if (lead >= 0xF0 && lead <= 0xF4) len = 4;
    char32_t cp = len == 1 ? lead : len == 2 ? lead & 0x1F : len == 3 ? lead & 0x0F : lead & 0x07;
    std::size_t n = 1;  // bytes of a valid prefix of the sequence
    for (; n < len && i + n < bytes.size(); ++n) {
      const auto c = static_cast<unsigned char>(bytes[i + n]);
      // The second byte's range also excludes overlong forms, surrogates and values > U+10FFFF.
      const unsigned char lo = n == 1 && lead == 0xE0 ? 0xA0 : n == 1 && lead == 0xF0 ? 0x90 : 0x80;
      const unsigned char hi = n == 1 && lead == 0xED ? 0x9F : n == 1 && lead == 0xF4 ? 0x8F : 0xBF;
      if (c < lo || c > hi) break;
      cp = (cp << 6) | (c & 0x3F);
    }
    out += n == len ? cp : U'\uFFFD';
    i += n;
  }
  return out;
}

void utf8_append(std::string& out, char32_t cp) {
  auto put = [&out](uint32_t b) { out += static_cast<char>(b); };
  if (cp < 0x80) {
    put(cp);
  } else if (cp < 0x800) {
    put(0xC0 | (cp >> 6)), put(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    put(0xE0 | (cp >> 12)), put(0x80 | ((cp >> 6) & 0x3F)), put(0x80 | (cp & 0x3F));
  } else {
    put(0xF0 | (cp >> 18)), put(0x80 | ((cp >> 12) & 0x3F)), put(0x80 | ((cp >> 6) & 0x3F)), put(0x80 | (cp & 0x3F));
  }
}

std::string utf8_encode(std::u32string_view text) {
  std::string out;
  for (char32_t cp : text) utf8_append(out, cp);
  return out;
}

bool is_letter(char32_t c) { return in_ranges(c, kLetters); }
bool is_number(char32_t c) { return in_ranges(c, kNumbers); }
bool is_space(char32_t c) {
  return (c >= 0x9 && c <= 0xD) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::u32string html_unescape(std::u32string_view text) {
  std::u32string out;
  for (std::size_t i = 0; i < text.size();) {
    const auto rest = text.substr(i + 1);
    if (text[i] != '&') {
      out += text[i++];
    } else if (const auto numeric = numeric_entity(rest)) {
      if (numeric->second) out += *numeric->second;
      i += 1 + numeric->first;
    } else if (const auto named = named_entity(rest)) {
      out += named->second;
      i += 1 + named->first;
    } else {
      out += text[i++];
    }
  }
  return out;
}

std::u32string basic_clean(std::u32string_view input) {
  // ftfy.fix_text works line by line, repeating its fixes until the line stops changing; it
  // unescapes HTML up to the first line that looks like markup (has a '<').
  std::u32string text;
  bool unescape = true;
  for (std::size_t pos = 0, end = 0; pos < input.size(); pos = end) {
    end = std::min(input.find(U'\n', pos), input.size() - 1) + 1;
    std::u32string line(input.substr(pos, end - pos));
    unescape = unescape && line.find(U'<') == std::u32string::npos;
    for (;;) {
      std::u32string fixed;
      for (char32_t c : unescape ? html_unescape(line) : line) append_ftfy_fixed(fixed, c);
      if (fixed == line) break;
      line = std::move(fixed);
    }
    text += line;
  }
  return strip(html_unescape(html_unescape(text)));  // CLIP's own two rounds
}

std::u32string whitespace_clean(std::u32string_view text) {
  std::u32string out;
  for (char32_t c : strip(text)) {
    if (!is_space(c)) out += c;
    else if (out.back() != ' ') out += ' ';  // `out` is not empty: the text starts with a non-space
  }
  return out;
}

std::u32string to_lower(std::u32string_view text) {
  std::u32string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char32_t c = text[i];
    if (c == 0x130) {
      out += U"i\u0307";  // İ lower-cases to i + combining dot above
    } else if (c == 0x3A3 && final_sigma(text, i)) {
      out += U'\u03C2';
    } else {
      out += lower_char(c);
    }
  }
  return out;
}

std::vector<std::string> pre_tokenize(std::u32string_view text) {
  // The regex's alternatives, tried in order at each position; no match skips one character.
  static constexpr std::u32string_view kLiterals[] = {U"<|startoftext|>", U"<|endoftext|>", U"'s", U"'t", U"'re",
                                                      U"'ve", U"'m", U"'ll", U"'d"};
  auto is_other = [](char32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); };
  std::vector<std::string> tokens;
  std::size_t i = 0;
  auto take_while = [&](auto predicate) {
    std::size_t end = i;
    while (end < text.size() && predicate(text[end])) ++end;
    tokens.push_back(utf8_encode(text.substr(i, end - i)));
    i = end;
  };
  while (i < text.size()) {
    const auto literal = std::ranges::find_if(kLiterals, [&](auto l) { return starts_with_nocase(text.substr(i), l); });
    if (literal != std::end(kLiterals)) {
      tokens.push_back(utf8_encode(text.substr(i, literal->size())));
      i += literal->size();
    } else if (is_letter(text[i])) {
      take_while(is_letter);
    } else if (is_number(text[i])) {
      tokens.push_back(utf8_encode(text.substr(i++, 1)));
    } else if (is_other(text[i])) {
      take_while(is_other);
    } else {
      ++i;
    }
  }
  return tokens;
}

}  // namespace detail

struct ClipTokenizer::Impl {
  ClipTokenizerOptions options;
  std::unordered_map<std::string, int64_t> encoder;
  std::vector<std::optional<std::string>> decoder;  // by id; empty where an id has no token
  std::unordered_map<std::string, std::size_t> ranks;  // "first second" -> merge priority
  int64_t sot = 0, eot = 0;

  // Per-word BPE results. Bounded (CLIP's grows forever) by clearing it when full.
  static constexpr std::size_t kMaxCached = 1 << 16;
  mutable std::mutex mutex;
  mutable std::unordered_map<std::string, std::vector<std::string>> cache;

  std::vector<std::string> word_bpe(const std::string& word) const {
    {
      std::lock_guard lock(mutex);
      if (auto it = cache.find(word); it != cache.end()) return it->second;
    }
    auto pieces = detail::bpe(word, ranks);
    std::lock_guard lock(mutex);
    if (cache.size() >= kMaxCached) cache.clear();
    cache.emplace(word, pieces);
    return pieces;
  }

  std::vector<std::string> tokens(std::string_view text) const {
    using namespace detail;
    std::vector<std::string> out;
    for (const auto& pre : pre_tokenize(to_lower(whitespace_clean(basic_clean(utf8_decode(text)))))) {
      std::string word;
      for (unsigned char b : pre) utf8_append(word, bytes_to_unicode()[b]);
      for (auto& piece : word_bpe(word)) out.push_back(std::move(piece));
    }
    return out;
  }

  int64_t id(const std::string& token) const {
    const auto it = encoder.find(token);
    if (it == encoder.end()) throw TokenizerError("ClipTokenizer: no id for token '" + token + "'");
    return it->second;
  }

  // Fills encoder (later duplicates win, like Python's dict) and decoder from `vocab` by id.
  void set_vocab(const std::vector<std::pair<std::string, int64_t>>& vocab, std::size_t size) {
    decoder.assign(size, std::nullopt);
    for (const auto& [token, index] : vocab) {
      encoder.insert_or_assign(token, index);
      decoder[static_cast<std::size_t>(index)] = token;
    }
  }
  void set_merges(const std::vector<detail::Merge>& merges) {
    for (std::size_t r = 0; r < merges.size(); ++r) ranks.insert_or_assign(merges[r].first + ' ' + merges[r].second, r);
  }
};

ClipTokenizer::ClipTokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {
  if (impl_->options.context_length < 2)
    throw TokenizerError("ClipTokenizer: context_length must be at least 2 (start and end tokens), got " +
                         std::to_string(impl_->options.context_length));
  impl_->sot = impl_->id(std::string(detail::kStartOfText));
  impl_->eot = impl_->id(std::string(detail::kEndOfText));
}

ClipTokenizer ClipTokenizer::from_openai_bpe(const std::string& bpe_path, ClipTokenizerOptions options,
                                             std::size_t max_merges) {
  const auto merges = detail::read_merges(bpe_path, max_merges);
  std::vector<std::string> tokens;
  for (char32_t cp : detail::byte_symbols_in_vocab_order()) detail::utf8_append(tokens.emplace_back(), cp);
  for (std::size_t b = 0; b < 256; ++b) tokens.push_back(tokens[b] + std::string(detail::kEndOfWord));
  for (const auto& m : merges) tokens.push_back(m.first + m.second);
  tokens.emplace_back(detail::kStartOfText);
  tokens.emplace_back(detail::kEndOfText);

  auto impl = std::make_shared<Impl>();
  impl->options = options;
  std::vector<std::pair<std::string, int64_t>> vocab;
  for (std::size_t i = 0; i < tokens.size(); ++i) vocab.emplace_back(tokens[i], static_cast<int64_t>(i));
  impl->set_vocab(vocab, tokens.size());
  impl->set_merges(merges);
  return ClipTokenizer(std::move(impl));
}

ClipTokenizer ClipTokenizer::from_hf_files(const std::string& vocab_json, const std::string& merges_txt,
                                           ClipTokenizerOptions options, std::size_t max_merges) {
  nlohmann::json json;
  try {
    JsonLimits limits;  // {token: id}: one level; CLIP's is ~1.6 MB
    limits.max_bytes = std::size_t{64} << 20;
    limits.max_depth = 4;
    json = parse_json<nlohmann::json>(detail::read_file(vocab_json), limits);
  } catch (const JsonError& e) {
    throw TokenizerError(vocab_json, e.what());
  }
  if (!json.is_object()) throw TokenizerError(vocab_json, "expected a JSON object mapping tokens to ids");
  std::vector<std::pair<std::string, int64_t>> vocab;
  for (auto it = json.begin(); it != json.end(); ++it) {
    const std::string& token = it.key();
    const auto& id = it.value();
    // Ids index the model's embedding table, so they must be 0..N-1.
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= static_cast<int64_t>(json.size()))
      throw TokenizerError(vocab_json, "the id of '" + token + "' must be an integer in [0, " +
                                           std::to_string(json.size()) + "), got " + id.dump());
    vocab.emplace_back(token, id.get<int64_t>());
  }
  auto impl = std::make_shared<Impl>();
  impl->options = options;
  impl->set_vocab(vocab, json.size());

  std::vector<std::string> required{std::string(detail::kStartOfText), std::string(detail::kEndOfText)};
  for (char32_t cp : detail::bytes_to_unicode()) {
    detail::utf8_append(required.emplace_back(), cp);
    required.push_back(required.back() + std::string(detail::kEndOfWord));
  }
  for (const auto& token : required)
    if (!impl->encoder.contains(token)) throw TokenizerError(vocab_json, "no entry for '" + token + "'");

  const auto merges = detail::read_merges(merges_txt, max_merges);
  for (const auto& m : merges)
    if (!impl->encoder.contains(m.first + m.second))
      throw TokenizerError(vocab_json, "no entry for merged token '" + m.first + m.second + "' (" + merges_txt +
                                           " line " + std::to_string(m.line) + ")");
  impl->set_merges(merges);
  return ClipTokenizer(std::move(impl));
}

std::vector<std::string> ClipTokenizer::bpe_tokens(std::string_view text) const { return impl_->tokens(text); }

std::vector<int64_t> ClipTokenizer::encode(std::string_view text) const {
  std::vector<int64_t> ids;
  for (const auto& token : impl_->tokens(text)) ids.push_back(impl_->id(token));
  return ids;
}

std::vector<int64_t> ClipTokenizer::tokenize(std::string_view text) const {
  const auto context = static_cast<std::size_t>(impl_->options.context_length);
  std::vector<int64_t> ids{impl_->sot};
  for (int64_t id : encode(text)) ids.push_back(id);
  ids.push_back(impl_->eot);
  if (ids.size() > context) {
    if (!impl_->options.truncate)
      throw TokenizerError("ClipTokenizer: text of " + std::to_string(ids.size()) +
                           " tokens is too long for context length " + std::to_string(context) + ": '" +
                           std::string(text.substr(0, 60)) + "'");
    ids.resize(context);
    ids.back() = impl_->eot;
  }
  ids.resize(context, 0);
  return ids;
}

std::string ClipTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string bytes;
  for (int64_t id : ids) {
    if (id < 0 || static_cast<std::size_t>(id) >= impl_->decoder.size() || !impl_->decoder[id])
      throw TokenizerError("ClipTokenizer::decode: id " + std::to_string(id) + " is not in the vocabulary");
    for (char32_t cp : detail::utf8_decode(*impl_->decoder[id])) {
      const int b = detail::symbol_to_byte(cp);
      if (b < 0) throw TokenizerError("ClipTokenizer::decode: token '" + *impl_->decoder[id] + "' is not byte-level");
      bytes += static_cast<char>(b);
    }
  }
  std::string text = detail::utf8_encode(detail::utf8_decode(bytes));  // invalid UTF-8 -> U+FFFD
  for (std::size_t at = 0; (at = text.find(detail::kEndOfWord, at)) != std::string::npos; ++at)
    text.replace(at, detail::kEndOfWord.size(), " ");
  return text;
}

int64_t ClipTokenizer::start_token() const { return impl_->sot; }
int64_t ClipTokenizer::end_token() const { return impl_->eot; }
std::size_t ClipTokenizer::vocab_size() const { return impl_->decoder.size(); }
const ClipTokenizerOptions& ClipTokenizer::options() const { return impl_->options; }

}  // namespace clprompt
