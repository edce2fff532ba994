// Links from an alarm or a data-quality finding back to the raw frames (原始报文) that
// produced it. The services build each link (`frames` of GET /api/alarm/alarms/{id} and
// GET /api/validation/findings/{id}): one per device, the archive query of the evidence
// window. The page follows it as given; the archive applies the caller's scope.

export interface FramesLink {
  mn: string
  point_ids: string[]
  from: string
  to: string
  /** `/api/ingest-hj212/archive/frames?mn=…&data_from=…&data_to=…` */
  url: string
  /** The same window as text: `/api/ingest-hj212/archive/frames.txt?…&meta=true` */
  text_url: string
}

export type LinkQuery = Record<string, string | string[]>

/** A link's path and its query (a repeated key becomes an array), to page through it. */
export function splitLink(url: string): { path: string; query: LinkQuery } {
  const [path, search = ''] = url.split('?', 2)
  const query: LinkQuery = {}
  for (const [key, value] of new URLSearchParams(search)) {
    const seen = query[key]
    query[key] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value]
  }
  return { path, query }
}

/** The name the text download is saved under: the device and the window's start. */
export function framesFilename(link: FramesLink): string {
  return `frames-${link.mn}-${link.from.slice(0, 10)}.txt`
}

/** Element Plus tag type of an archive verdict. */
export function verdictType(verdict: string): 'success' | 'danger' | 'warning' | 'info' {
  return verdict === 'accepted' ? 'success' : verdict === 'rejected' ? 'danger' : verdict === 'unregistered' ? 'warning' : 'info'
}
