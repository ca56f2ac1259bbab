/* kiln/api.h: KILN_API marks the functions of kiln's public API. The library is built with
 * hidden visibility (-fvisibility=hidden), so libkiln.so exports exactly these; everything else
 * is internal to the library. */
#ifndef KILN_API_H
#define KILN_API_H

#if defined(__GNUC__) || defined(__clang__)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

#endif
