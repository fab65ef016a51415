/**
 * Online courses: learners enroll, work through lessons, take quizzes, complete courses and rate them;
 * the school publishes content, updates courses and reminds learners of deadlines, and alert rules turn
 * those notifications into webhooks (examples/course-notifications/receiver.ts makes chat messages of
 * them). A learner's path through a course is compressed into minutes, so the funnel fills while you
 * watch. Courses and learners come from the catalog.
 */
import { seededRandom } from "../../core/random";
import {
  between,
  COUNTRIES,
  chance,
  FIRST_NAMES,
  LAST_NAMES,
  lognormal,
  namePair,
  normal,
  type Pack,
  type PackEvent,
  pick,
  type Rng,
  type Traffic,
  timeline,
  traitsOf,
  weighted,
  zipf,
} from "./pack";

/** The catalog's courses, most popular first; `lessons`, `quality` (mean rating) and `difficulty` drive the traffic. */
export const COURSES = [
  {
    id: "c-ts-basics",
    title: "TypeScript Basics",
    level: "beginner",
    instructor: "Ada Brandt",
    lessons: 12,
    quality: 4.6,
    difficulty: 0.2,
  },
  {
    id: "c-sql",
    title: "SQL for Analysts",
    level: "beginner",
    instructor: "Marco Ruiz",
    lessons: 10,
    quality: 4.4,
    difficulty: 0.3,
  },
  {
    id: "c-stats",
    title: "Statistics Without Tears",
    level: "intermediate",
    instructor: "Priya Nair",
    lessons: 16,
    quality: 4.2,
    difficulty: 0.5,
  },
  {
    id: "c-web-perf",
    title: "Web Performance",
    level: "intermediate",
    instructor: "Jonas Berg",
    lessons: 14,
    quality: 4.0,
    difficulty: 0.5,
  },
  {
    id: "c-design",
    title: "Design Systems in Practice",
    level: "intermediate",
    instructor: "Léa Martin",
    lessons: 8,
    quality: 4.5,
    difficulty: 0.4,
  },
  {
    id: "c-ml",
    title: "Machine Learning Foundations",
    level: "advanced",
    instructor: "Priya Nair",
    lessons: 20,
    quality: 3.9,
    difficulty: 0.8,
  },
  {
    id: "c-k8s",
    title: "Kubernetes the Calm Way",
    level: "advanced",
    instructor: "Tomasz Wolski",
    lessons: 18,
    quality: 3.6,
    difficulty: 0.9,
  },
  {
    id: "c-writing",
    title: "Technical Writing",
    level: "beginner",
    instructor: "Ada Brandt",
    lessons: 6,
    quality: 4.7,
    difficulty: 0.1,
  },
] as const;

type Course = (typeof COURSES)[number];

const PLANS = weighted([
  ["free", 6],
  ["pro", 3],
  ["team", 1],
] as const);

/** A fixed draw for the catalog's learners, so the catalog is the same on every run whatever the traffic's seed. */
const catalogDraw = seededRandom(1207);

/** The learners: 1200 catalog users (every first and last name pair once), with plan and country. */
export const LEARNERS = Array.from({ length: FIRST_NAMES.length * LAST_NAMES.length }, (_, i) => ({
  id: `l-${String(i + 1).padStart(4, "0")}`,
  ...namePair(i),
  plan: PLANS(catalogDraw),
  country: COUNTRIES(catalogDraw),
}));

const popularIndex = zipf(
  COURSES.map((_, i) => i),
  0.7,
);
const popular = (rng: Rng) => COURSES[popularIndex(rng)];
/** Some learners study more than others, mildly: the busiest stays far below the funnels' per-user bound. */
const learnerIndex = zipf(
  LEARNERS.map((_, i) => i),
  0.2,
);
const changes = ["lesson-added", "schedule-changed", "materials-updated"] as const;
const published = ["lesson", "quiz", "video"] as const;

/** Dims every course event carries. */
const courseDims = (c: Course) => ({ course: c.id, level: c.level });

/** A rating from 1 to 5 around the course's quality. */
const rating = (rng: Rng, c: Course) => Math.round(normal(rng, c.quality, 0.8, 1, 5));

/** A quiz score (0–100): harder courses score lower. */
const score = (rng: Rng, c: Course) => Math.round(normal(rng, 88 - 30 * c.difficulty, 14, 0, 100));

/**
 * How far a learner gets in a course: a learner's own traits decide whether they ever start a course,
 * get halfway, or finish what they start (so the funnel shows shares of learners, however often they
 * enroll); harder courses lose more of those who would finish.
 */
function reach(learnerIndex: number, courseIndex: number): { starts: boolean; half: boolean; finishes: boolean } {
  const t = traitsOf(learnerIndex);
  const starts = t() < 0.85;
  const half = starts && t() < 0.7;
  const c = COURSES[courseIndex];
  const finishes =
    half && t() < 0.8 && traitsOf(10_000 + learnerIndex * COURSES.length + courseIndex)() > c.difficulty * 0.6;
  return { starts, half, finishes };
}

/**
 * A learner's path through a course, compressed into minutes: enrollment, lessons (quizzes every few),
 * progress milestones at the first lesson and halfway, and for those who finish, a completion and often
 * a rating. Those who stop, stop at a random lesson before the next milestone.
 */
function journey(rng: Rng, ci: number, li: number): Array<Omit<PackEvent, "ts">> {
  const c = COURSES[ci];
  const user = LEARNERS[li].id;
  const dims = courseDims(c);
  const out: Array<Omit<PackEvent, "ts">> = [{ name: "course.enrolled", user, dims }];
  const { starts, half: halfway, finishes } = reach(li, ci);
  if (!starts) return out;
  const half = Math.ceil(c.lessons / 2);
  const last = finishes ? c.lessons : halfway ? between(rng, half, c.lessons - 1) : between(rng, 1, half - 1);
  for (let lesson = 1; lesson <= last; lesson++) {
    out.push({
      name: "lesson.completed",
      value: lognormal(rng, 14, 0.5),
      user,
      dims: { ...dims, lesson: `${lesson}` },
    });
    if (lesson === 1)
      out.push({ name: "course.progress", value: 1, user, dims: { ...dims, milestone: "first_lesson" } });
    if (lesson === half) out.push({ name: "course.progress", value: 50, user, dims: { ...dims, milestone: "half" } });
    if (lesson % 4 === 0)
      out.push({ name: "quiz.submitted", value: score(rng, c), user, dims: { ...dims, lesson: `${lesson}` } });
  }
  if (!finishes) return out;
  out.push({ name: "course.completed", value: lognormal(rng, 9, 0.6), user, dims });
  if (chance(rng, 0.6)) {
    const r = rating(rng, c);
    out.push({ name: "course.rated", value: r, user, dims: { ...dims, rating: `${r}` } });
  }
  return out;
}

/** A returning learner's study session: a few lessons of a course they are in, a quiz, sometimes a rating. */
function session(rng: Rng, c: Course, user: string): Array<Omit<PackEvent, "ts">> {
  const dims = courseDims(c);
  const out: Array<Omit<PackEvent, "ts">> = [];
  const from = between(rng, 2, c.lessons);
  const to = Math.min(c.lessons, from + between(rng, 0, 2));
  for (let lesson = from; lesson <= to; lesson++) {
    out.push({
      name: "lesson.completed",
      value: lognormal(rng, 14, 0.5),
      user,
      dims: { ...dims, lesson: `${lesson}` },
    });
  }
  if (chance(rng, 0.3))
    out.push({ name: "quiz.submitted", value: score(rng, c), user, dims: { ...dims, lesson: `${to}` } });
  if (chance(rng, 0.05)) {
    const r = rating(rng, c);
    out.push({ name: "course.rated", value: r, user, dims: { ...dims, rating: `${r}` } });
  }
  return out;
}

/** What the school does now and then, in turn: update a course, publish content, remind a course's learners of a deadline. */
const SCHOOL_CYCLE = ["course.updated", "content.published", "deadline.upcoming"] as const;
/** The share of units that are the school's (one in a thousand: about every 20 s at 200 events/s). */
const SCHOOL_SHARE = 0.001;

function school(rng: Rng, what: (typeof SCHOOL_CYCLE)[number]): Array<Omit<PackEvent, "ts">> {
  const c = popular(rng);
  if (what === "course.updated") return [{ name: what, dims: { course: c.id, change: pick(rng, changes) } }];
  if (what === "content.published") return [{ name: what, dims: { course: c.id, kind: pick(rng, published) } }];
  // A reminder to the learners of one course: a burst of events, one per learner.
  const due = pick(rng, ["24h", "72h"] as const);
  return Array.from({ length: between(rng, 3, 8) }, () => ({
    name: what,
    user: LEARNERS[learnerIndex(rng)].id,
    dims: { course: c.id, due_in: due },
  }));
}

function coursesTraffic(): Traffic {
  let schoolTurn = 0;
  return {
    next(rng: Rng, now: number): PackEvent[] {
      const ci = popularIndex(rng);
      const li = learnerIndex(rng);
      const u = rng();
      const steps =
        u < SCHOOL_SHARE
          ? school(rng, SCHOOL_CYCLE[schoolTurn++ % SCHOOL_CYCLE.length])
          : u < 0.3
            ? journey(rng, ci, li)
            : session(rng, COURSES[ci], LEARNERS[li].id);
      const times = timeline(rng, now, steps.length, 3000);
      return steps.map((s, i) => ({ ...s, ts: times[i] }));
    },
  };
}

const perCourse = { course: "courses" } as const;

export const courses: Pack = {
  name: "courses",
  tenant: "demo courses",
  description:
    "Online courses: enrollments, lesson progress, completions, quiz scores and ratings by course, and course notifications as chat messages.",
  catalog: {
    courses: COURSES.map(({ id, title, level, instructor }) => ({ id, title, level, instructor })),
    users: LEARNERS.map((l) => ({ ...l })),
  },
  streams: [
    { name: "course.enrolled", description: "A learner enrolled in a course.", dims: ["course", "level"], user: true },
    {
      name: "lesson.completed",
      description: "A learner finished a lesson; value: minutes spent on it.",
      dims: ["course", "level", "lesson"],
      user: true,
    },
    {
      name: "course.progress",
      description: "A learner reached a milestone of a course (first_lesson, half); value: percent done.",
      dims: ["course", "level", "milestone"],
      user: true,
    },
    {
      name: "quiz.submitted",
      description: "A quiz was handed in; value: its score (0–100).",
      dims: ["course", "level", "lesson"],
      user: true,
    },
    {
      name: "course.completed",
      description: "A learner completed a course; value: days it took.",
      dims: ["course", "level"],
      user: true,
    },
    {
      name: "course.rated",
      description: "A learner rated a course; value: the rating (1–5), also the dim rating.",
      dims: ["course", "level", "rating"],
      dimension_sets: [["course", "rating"]],
      user: true,
    },
    {
      name: "course.updated",
      description: "The school changed a course (lesson-added, schedule-changed, materials-updated).",
      dims: ["course", "change"],
      user: false,
    },
    {
      name: "content.published",
      description: "New content went live in a course (lesson, quiz, video).",
      dims: ["course", "kind"],
      user: false,
    },
    {
      name: "deadline.upcoming",
      description: "A learner was reminded of a course deadline (due in 24h or 72h).",
      dims: ["course", "due_in"],
      user: true,
    },
  ],
  funnels: [
    {
      name: "course completion",
      steps: [
        { stream: "course.enrolled" },
        { stream: "course.progress", filters: [{ dim: "milestone", op: "eq", value: "first_lesson" }] },
        { stream: "course.progress", filters: [{ dim: "milestone", op: "eq", value: "half" }] },
        { stream: "course.completed" },
      ],
      window: "1d",
      breakdown: "course",
    },
  ],
  rules: [
    {
      rule: {
        name: "Course updated",
        stream: "course.updated",
        aggregate: "count",
        window: "1m",
        comparator: ">",
        threshold: 0,
        labels: { channel: "#course-updates", summary: "A course changed: tell its learners what is new." },
      },
      notify: true,
    },
    {
      rule: {
        name: "New content published",
        stream: "content.published",
        aggregate: "count",
        window: "1m",
        comparator: ">",
        threshold: 0,
        labels: { channel: "#course-updates", summary: "New lessons, quizzes or videos are live." },
      },
      notify: true,
    },
    {
      rule: {
        name: "Deadline reminders sent",
        stream: "deadline.upcoming",
        aggregate: "count",
        window: "5m",
        comparator: ">",
        threshold: 0,
        labels: { channel: "#learner-support", summary: "Learners were reminded of a deadline: expect questions." },
      },
      notify: true,
    },
    {
      rule: {
        name: "Quiz scores dropping",
        stream: "quiz.submitted",
        aggregate: "p50",
        window: "15m",
        comparator: "<",
        threshold: 55,
        for: "5m",
        labels: { channel: "#instructors", summary: "Median quiz score under 55: a quiz may be too hard." },
      },
    },
    {
      rule: {
        name: "No enrollments",
        stream: "course.enrolled",
        kind: "no_data",
        no_data: "10m",
        labels: { channel: "#growth", summary: "Nobody enrolled for 10 minutes." },
      },
    },
  ],
  boards: [
    {
      name: "Course outcomes",
      description: "Which courses learners finish, how they rate them and how they score.",
      panels: [
        {
          title: "Completion rate by course",
          kind: "bars",
          width: 2,
          query: {
            streams: { e: "course.enrolled", c: "course.completed" },
            measures: [
              { name: "completion_rate", expr: "c.count / e.count" },
              { name: "enrollments", expr: "e.count" },
              { name: "completions", expr: "c.count" },
            ],
            group_by: ["course"],
            labels: perCourse,
            order_by: { measure: "completion_rate", dir: "desc" },
            range: { last: "7d" },
          },
        },
        {
          title: "Course completion funnel",
          kind: "funnel",
          funnel: "course completion",
          days: 7,
          width: 2,
        },
        {
          title: "Completion rate by instructor",
          kind: "bars",
          query: {
            streams: { e: "course.enrolled", c: "course.completed" },
            measures: [
              { name: "completion_rate", expr: "c.count / e.count" },
              { name: "enrollments", expr: "e.count" },
            ],
            group_by: ["course"],
            attributes: { course: "courses.instructor" },
            order_by: { measure: "completion_rate", dir: "desc" },
            range: { last: "7d" },
          },
        },
        {
          title: "Average rating by course",
          kind: "bars",
          query: {
            stream: "course.rated",
            measures: ["mean", "count"],
            group_by: ["course"],
            labels: perCourse,
            order_by: { measure: "mean", dir: "desc" },
            range: { last: "7d" },
          },
        },
        {
          title: "Quiz score percentiles by course",
          kind: "table",
          query: {
            stream: "quiz.submitted",
            measures: ["p50", "p90", "p99", "count"],
            group_by: ["course"],
            labels: perCourse,
            order_by: { measure: "p50", dir: "asc" },
            range: { last: "7d" },
          },
        },
        {
          title: "Median quiz score per hour",
          kind: "timeseries",
          query: { stream: "quiz.submitted", measures: ["p50", "p90"], step: "1h", range: { last: "24h" } },
        },
        {
          title: "Rating distribution by course",
          kind: "table",
          width: 2,
          query: {
            stream: "course.rated",
            measures: ["count"],
            group_by: ["course", "rating"],
            labels: perCourse,
            limit: 50,
            range: { last: "7d" },
          },
        },
      ],
    },
    {
      name: "Learner engagement",
      description: "How many learners study, and how much.",
      panels: [
        {
          title: "Daily active learners",
          kind: "number",
          query: { stream: "lesson.completed", measures: ["distinct_users"], range: { last: "1d" } },
        },
        {
          title: "Weekly active learners",
          kind: "number",
          query: { stream: "lesson.completed", measures: ["distinct_users"], range: { last: "7d" } },
        },
        {
          title: "Lessons per learner (24 h)",
          kind: "number",
          query: {
            stream: "lesson.completed",
            measures: [{ name: "lessons_per_learner", expr: "count / distinct_users" }],
            range: { last: "24h" },
          },
        },
        {
          title: "Courses completed (24 h)",
          kind: "number",
          query: { stream: "course.completed", measures: ["count"], range: { last: "24h" } },
        },
        {
          title: "Active learners per day",
          kind: "timeseries",
          width: 2,
          query: {
            stream: "lesson.completed",
            measures: ["distinct_users", "count"],
            step: "1d",
            range: { last: "30d" },
          },
        },
        {
          title: "Lessons per learner by course",
          kind: "bars",
          query: {
            stream: "lesson.completed",
            measures: [{ name: "lessons_per_learner", expr: "count / distinct_users" }, "distinct_users"],
            group_by: ["course"],
            labels: perCourse,
            order_by: { measure: "lessons_per_learner", dir: "desc" },
            range: { last: "7d" },
          },
        },
        {
          title: "Enrollments by level",
          kind: "bars",
          query: { stream: "course.enrolled", measures: ["count"], group_by: ["level"], range: { last: "7d" } },
        },
      ],
    },
  ],
  traffic: coursesTraffic,
};
