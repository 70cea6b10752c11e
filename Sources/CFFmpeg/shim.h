#ifndef FPNSTREAM_CFFMPEG_SHIM_H
#define FPNSTREAM_CFFMPEG_SHIM_H
#include <libavformat/avformat.h>
#include <libavcodec/avcodec.h>
#include <libswscale/swscale.h>
#include <libavutil/avutil.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/error.h>
#include <libavutil/dict.h>
#include <libavutil/time.h>

/* AVERROR(e) and AVERROR_EOF are macros Swift cannot import; expose them as functions. */
static inline int fpn_averror(int e) { return AVERROR(e); }
static inline int fpn_averror_eof(void) { return AVERROR_EOF; }
#endif
