/* babelfish — everything a transport module includes. */
#ifndef BABELFISH_BABELFISH_H
#define BABELFISH_BABELFISH_H

#include "error.h"
#include "form.h"
#include "jid.h"
#include "module.h"
#include "stanza.h"
#include "xml.h"

#endif
