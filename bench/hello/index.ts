/** The physical ceiling: a Worker that does nothing but answer. */
export default {
  fetch(): Response {
    return new Response("ok");
  },
};
