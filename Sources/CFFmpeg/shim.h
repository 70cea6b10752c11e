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
static inline int fpn_averror_exit(void) { return AVERROR_EXIT; }
static inline int fpn_averror_invaliddata(void) { return AVERROR_INVALIDDATA; }
static inline int fpn_averror_decoder_not_found(void) { return AVERROR_DECODER_NOT_FOUND; }
static inline int fpn_averror_stream_not_found(void) { return AVERROR_STREAM_NOT_FOUND; }
static inline int fpn_averror_encoder_not_found(void) { return AVERROR_ENCODER_NOT_FOUND; }
/* AV_NOPTS_VALUE is a cast expression Swift cannot import. */
static inline int64_t fpn_nopts_value(void) { return AV_NOPTS_VALUE; }
#endif
